"""jsonl-batch: validate, build, split and join the JSONL files of OpenAI-style Batch APIs."""

from .problems import CATALOGUE, Problem, Report, Stats
from .profiles import PROFILES, Profile, get_profile, parse_size
from .reading import ReadError, iter_lines, parse_line
from .validation import Validation, iter_problems, validate_file

__all__ = [
    "CATALOGUE",
    "PROFILES",
    "Problem",
    "Profile",
    "ReadError",
    "Report",
    "Stats",
    "Validation",
    "get_profile",
    "iter_lines",
    "iter_problems",
    "parse_line",
    "parse_size",
    "validate_file",
]
