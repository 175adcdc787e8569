"""MATH final answers: the answer a solution writes, and exact match after Hendrycks et al.'s normalisation.

:func:`extract_math_answer` reads the last ``\\boxed{...}`` (else Minerva's ``"The final answer is X"``,
else the last ``$...$``); :func:`normalize_math_answer` is ``strip_string`` of hendrycks/math (lm-eval's
``hendrycks_math``) plus Minerva's thousands separators and trailing ``.0``; :func:`math_answers_equal`
compares two answers after it. Used by :mod:`spectral_moe.evaluation.scoring` (``answer_style="math_final"``).
"""

from __future__ import annotations

import re

from ..data.olmo import last_boxed

__all__ = ["extract_math_answer", "math_answers_equal", "normalize_math_answer"]

_FINAL_ANSWER = re.compile(r"final answer is\s*(.+?)(?:\.?\s*I hope it is correct|\.?\s*$)", re.DOTALL)
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_TRAILING_ZERO = re.compile(r"(-?\d+)\.0+")
_INT_FRACTION = re.compile(r"(-?\d+)/(\d+)")


def extract_math_answer(text: str) -> str | None:
    """The final answer written in a MATH solution: the content of its last ``\\boxed{...}``, else
    Minerva's ``"The final answer is X[. I hope it is correct.]"``, else the last ``$...$``, else the
    stripped text (lm-eval's hendrycks_math fallback); None for an empty text."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    found = _FINAL_ANSWER.findall(text)
    if found:
        return found[-1].strip()
    dollars = [i for i, c in enumerate(text) if c == "$"]
    if len(dollars) >= 2:
        return text[dollars[-2] + 1 : dollars[-1]].strip()
    return text.strip() or None


def _braced_after(s: str, command: str) -> str:
    """``\\sqrt3 -> \\sqrt{3}``, ``\\frac12 -> \\frac{1}{2}``, ``\\frac1{7} -> \\frac{1}{7}``: brace the
    single-character arguments of ``command`` (``\\sqrt`` one, ``\\frac`` two)."""
    pieces = s.split(command)
    out = pieces[0]
    n_args = 2 if command == "\\frac" else 1
    for piece in pieces[1:]:
        out += command
        for _ in range(n_args):
            if not piece or piece[0] == "{":
                break
            out += "{" + piece[0] + "}"
            piece = piece[1:]
        out += piece
    return out


def normalize_math_answer(text: str) -> str:
    """A MATH answer in a canonical string form, for exact match.

    Follows Hendrycks et al.'s ``strip_string`` (the ``is_equiv`` of hendrycks/math, also lm-eval's
    ``hendrycks_math`` utils), step by step: strip surrounding ``$``, unwrap ``\\boxed{..}`` /
    ``\\fbox{..}``; drop line breaks, ``\\!``, ``\\left``/``\\right``, degrees (``^\\circ``), dollar signs (``\\$`` and math-mode ``$``),
    units after ``"\\text{ "``, percent signs; ``\\\\ -> \\``, ``tfrac``/``dfrac -> frac``; ``" ." -> " 0."``,
    a leading ``.`` gets a ``0``; ``"x = 5" -> "5"`` when the left side has at most 2 characters; brace
    ``\\sqrt3``, ``\\frac12``; remove all spaces; ``0.5 -> \\frac{1}{2}`` and an integer ``a/b ->
    \\frac{a}{b}``. Added (Minerva's ``normalize_final_answer``, and the issue's rule): thousands
    separators in a plain number (``1,000 -> 1000``, but ``(1,2)`` is kept) and a trailing ``.0`` of an
    integer (``5.00 -> 5``). Fractions are otherwise compared as written: ``\\frac{2}{4}`` is not
    ``\\frac{1}{2}`` and nothing is evaluated numerically.
    """
    s = str(text).strip().strip("$").strip()
    for box in ("\\boxed", "\\fbox"):
        if s.startswith(box + "{") and s.endswith("}"):
            inner = last_boxed("\\boxed" + s[len(box) :])
            if inner is not None and len(inner) == len(s) - len(box) - 2:
                s = inner.strip()
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "")
    if "\\text{ " in s:
        s = s.split("\\text{ ")[0]
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    if s.count("=") == 1 and len(s.split("=")[0].strip()) <= 2:
        s = s.split("=")[1]
    s = _braced_after(s, "\\sqrt")
    s = s.replace(" ", "")
    s = _braced_after(s, "\\frac")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    m = _TRAILING_ZERO.fullmatch(s)
    if m:
        s = m.group(1)
    if s == "0.5":
        s = "\\frac{1}{2}"
    m = _INT_FRACTION.fullmatch(s)
    if m:
        s = "\\frac{" + m.group(1) + "}{" + m.group(2) + "}"
    return s


def math_answers_equal(predicted: str | None, reference: str | None) -> bool:
    """Exact match of :func:`normalize_math_answer` of both (False if either is None)."""
    if predicted is None or reference is None:
        return False
    return normalize_math_answer(predicted) == normalize_math_answer(reference)
