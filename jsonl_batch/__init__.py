"""jsonl-batch: validate, build, split and join the JSONL files of OpenAI-style Batch APIs."""

from .building import BatchWriter, BuildError
from .joining import Join, JoinError, JoinSummary, join
from .manifests import Manifest, Part
from .pricing import PriceTable, load_prices
from .problems import CATALOGUE, Problem, Report, Stats
from .profiles import PROFILES, Profile, get_profile, parse_size
from .reading import ReadError, iter_lines, parse_line
from .results import Anomaly
from .retrying import RetryResult, write_retry
from .rows import BodyShaper, build_file
from .splitting import SplitError, SplitResult, split_file
from .stats import BatchStats, file_stats
from .tables import COLUMNS, read_summary, write_table
from .tokens import TokenCounter, TokensUnavailable, output_ceiling
from .validation import Validation, iter_problems, validate_file

__all__ = [
    "CATALOGUE",
    "COLUMNS",
    "PROFILES",
    "Anomaly",
    "BatchStats",
    "BatchWriter",
    "BodyShaper",
    "BuildError",
    "Join",
    "JoinError",
    "JoinSummary",
    "Manifest",
    "Part",
    "PriceTable",
    "Problem",
    "Profile",
    "ReadError",
    "Report",
    "RetryResult",
    "SplitError",
    "SplitResult",
    "Stats",
    "TokenCounter",
    "TokensUnavailable",
    "Validation",
    "build_file",
    "file_stats",
    "get_profile",
    "iter_lines",
    "iter_problems",
    "join",
    "load_prices",
    "output_ceiling",
    "parse_line",
    "parse_size",
    "read_summary",
    "split_file",
    "validate_file",
    "write_retry",
    "write_table",
]
