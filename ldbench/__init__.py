"""ldbench: does Latent Drifting make counterfactual medical images more realistic and more useful?"""

__version__ = "0.1.0"
