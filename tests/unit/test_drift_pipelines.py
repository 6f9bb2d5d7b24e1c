"""ldbench.drift.pipelines: Latent Drifting through a stock diffusers pipeline's own arguments equals
ldbench's own sampling loop (text-to-image, SDEdit) and is the stock pipeline at δ = 0."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

from ldbench.drift import NO_DRIFT, Drift
from ldbench.drift.pipelines import Img2ImgStart, drift_kwargs
from ldbench.errors import UserError
from ldbench.models import Components
from ldbench.models.samplers import make_sampler
from ldbench.models.sampling import Chain, edit_latents, text_to_latents

PROMPTS = ["brain mri, 70 year old, alzheimer's disease", "a photo of a cat"]
DRIFTS = [Drift(0.1, train="noise", sample="init"), Drift(-0.2, train="noise", sample="every-step"),
          Drift((0.1, 0.0, -0.1, 0.05), train="noise", sample="every-step")]


def _parts_kwargs(parts: Components, sampler: str) -> dict:
    return dict(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
                scheduler=make_sampler(sampler, parts.scheduler), safety_checker=None, feature_extractor=None,
                requires_safety_checker=False)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("drift", DRIFTS + [NO_DRIFT])
def test_text_to_image_equals_ldbench_sampling(tiny_parts, sampler, drift):
    ours = text_to_latents(tiny_parts, make_sampler(sampler, tiny_parts.scheduler), PROMPTS, drift, steps=5,
                           guidance_scale=3.0, generator=torch.Generator().manual_seed(3))
    pipe = StableDiffusionPipeline(**_parts_kwargs(tiny_parts, sampler))
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(3)
    theirs = pipe(PROMPTS, num_inference_steps=5, guidance_scale=3.0, output_type="latent", generator=g,
                  **drift_kwargs(pipe, drift, len(PROMPTS), generator=g)).images
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("drift", DRIFTS + [NO_DRIFT])
def test_img2img_equals_ldbench_sdedit(tiny_parts, drift):
    size = tiny_parts.unet.config.sample_size
    source = torch.randn(2, 4, size, size, generator=torch.Generator().manual_seed(1))
    ours = edit_latents(tiny_parts, make_sampler("ddim", tiny_parts.scheduler), source, PROMPTS, drift,
                        Chain(steps=10, strength=0.6, guidance_scale=3.0), generator=torch.Generator().manual_seed(5))
    pipe = StableDiffusionImg2ImgPipeline(**_parts_kwargs(tiny_parts, "ddim"))
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(5)
    kwargs = drift_kwargs(pipe, drift, len(PROMPTS), generator=g, img2img=Img2ImgStart(source, 10, 0.6))
    theirs = pipe(PROMPTS, num_inference_steps=10, strength=0.6, guidance_scale=3.0, output_type="latent",
                  generator=g, **kwargs).images
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)  # one float64 rescaling of the start point


def test_img2img_without_source_latents_is_refused(tiny_parts):
    pipe = StableDiffusionImg2ImgPipeline(**_parts_kwargs(tiny_parts, "ddim"))
    with pytest.raises(UserError, match="source_latents"):
        drift_kwargs(pipe, DRIFTS[0], 2)
    assert drift_kwargs(pipe, NO_DRIFT, 2) == {}


class _AgedCaptions:
    """Just enough of a Dataset for the instruct editor's prompts."""

    name = "stub"

    def caption(self, row: dict) -> str:
        return f"brain mri, {row['age']} year old"


@pytest.mark.parametrize("drift", DRIFTS[:2] + [NO_DRIFT])
def test_instruct_pix2pix_equals_ldbench_instruct_editor(tiny_parts, drift):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    from ldbench.generate import EditBatch
    from ldbench.generate.instruct import Instruct, InstructOptions, widen_unet

    wide = widen_unet(tiny_parts.unet)
    with torch.no_grad():  # a trained model reads the source: give the image channels weight
        c = tiny_parts.unet.config.in_channels
        wide.conv_in.weight[:, c:].normal_(0, 0.05, generator=torch.Generator().manual_seed(2))
    parts = dataclasses.replace(tiny_parts, editor_unet=wide)
    size = tiny_parts.unet.config.sample_size
    source = torch.randn(2, 4, size, size, generator=torch.Generator().manual_seed(1))
    rows = [{"age": 72}, {"age": 80}]
    opts = InstructOptions(steps=6, guidance_scale=3.0, image_guidance_scale=1.5)
    batch = EditBatch(source, rows, rows, drift, opts, torch.Generator().manual_seed(4))
    ours, prompts = Instruct().edit(parts, _AgedCaptions(), batch)
    pipe = StableDiffusionInstructPix2PixPipeline(**{**_parts_kwargs(tiny_parts, "ddim"), "unet": wide})
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(4)
    theirs = pipe(prompts, image=source, num_inference_steps=6, guidance_scale=3.0, image_guidance_scale=1.5,
                  output_type="latent", generator=g, **drift_kwargs(pipe, drift, len(prompts), generator=g)).images
    # The two sum the three guidance terms in a different order: float rounding only.
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)
