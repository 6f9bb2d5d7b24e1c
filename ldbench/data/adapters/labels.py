"""Label vocabularies, captions and counterfactual rows shared by the adapters (brain MRI and chest X-ray)."""

from __future__ import annotations

import math

from ldbench.errors import UserError

# --- brain MRI: diagnosis CN / MCI / AD -------------------------------------------------------------------

DIAGNOSES = ("CN", "MCI", "AD")
_DIAGNOSIS_WORDS = {"CN": "cognitively normal", "MCI": "mild cognitive impairment", "AD": "alzheimer's disease"}
SEXES = ("F", "M")


def brain_caption(row: dict, dataset: str) -> str:
    """e.g. "brain mri, 72 year old, alzheimer's disease" (the synth-brain wording; age rounded half up)."""
    words = _DIAGNOSIS_WORDS.get(row.get("diagnosis"))
    if words is None:
        raise UserError(f"{dataset}: diagnosis must be one of {', '.join(DIAGNOSES)}, got {row.get('diagnosis')!r}")
    age = float(row.get("age", math.nan))
    return f"brain mri, {math.floor(age + 0.5)} year old, {words}" if math.isfinite(age) else f"brain mri, {words}"


def brain_counterfactual(row: dict, dataset: str) -> dict:
    """CN -> AD, AD -> CN, MCI -> AD (the conversion direction); every other attribute unchanged."""
    brain_caption(row, dataset)
    return {**row, "diagnosis": {"CN": "AD", "AD": "CN", "MCI": "AD"}[row["diagnosis"]]}


# --- chest X-ray: the 14 CheXpert observations --------------------------------------------------------------

OBSERVATIONS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")


def column_name(observation: str) -> str:
    """"Pleural Effusion" -> "pleural_effusion" (the attribute column)."""
    return observation.lower().replace(" ", "_")


FINDING_COLUMNS = tuple(column_name(o) for o in OBSERVATIONS)


def cxr_label(value: str, uncertain: str) -> int | None:
    """A CheXpert label cell -> 1 / 0 (-1 kept under 'ignore'); None if the value is unknown.

    blank (not mentioned) -> 0; 1.0 -> 1; 0.0 -> 0; -1.0 (uncertain) -> 0 / 1 / -1 by the policy."""
    v = value.strip()
    if v == "":
        return 0
    try:
        x = float(v)
    except ValueError:
        return None
    if x == 1.0:
        return 1
    if x == 0.0:
        return 0
    if x == -1.0:
        return {"zeros": 0, "ones": 1, "ignore": -1}[uncertain]
    return None


def cxr_caption(row: dict) -> str:
    """"chest x-ray, cardiomegaly, pleural effusion" (positive findings in CheXpert order) or
    "chest x-ray, no finding". Uncertain (-1) findings are left out."""
    found = [o.lower() for o, c in zip(OBSERVATIONS, FINDING_COLUMNS, strict=True)
             if c != "no_finding" and int(row.get(c, 0)) == 1]
    return "chest x-ray, " + (", ".join(found) if found else "no finding")


def cxr_counterfactual(row: dict, label: str) -> dict:
    """`row` with the binary finding `label` flipped (an uncertain -1 stays -1); no_finding follows."""
    value = int(row[label])
    if value == -1:
        return dict(row)
    out = {**row, label: 1 - value}
    if "no_finding" in out:
        out["no_finding"] = int(not any(int(out.get(c, 0)) == 1 for c in FINDING_COLUMNS
                                        if c not in ("no_finding", "support_devices")))
    return out
