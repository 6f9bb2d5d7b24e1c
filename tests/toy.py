"""What the toy suites of the end-to-end tests share."""

# The toy suites' base model. It is pretrained once a session and copied into each toy run's cache (the
# `toy_cache` fixture) instead of pretrained by every module again (about 14 s each). The kill-and-resume
# test starts from an empty cache and pretrains its own, which equals this one bit for bit.
TOY_BASE_MODEL = ("base_model={name: embedded, options: {vae_steps: 15, unet_steps: 15, crops_per_image: 4, "
                  "vae_width: 16}}")
