"""ClickHouse failures as budeval errors: terminal when the statement itself is wrong, else transient."""

from __future__ import annotations

import re

from budeval.errors import BudevalError, StoreQueryError, StoreUnavailableError

#: ClickHouse error codes (``src/Common/ErrorCodes.cpp``) that mean the statement itself is wrong: a retry cannot
#: change the answer, so the caller fails at once with the reason. Anything else -- no code (connection refused,
#: HTTP 5xx), timeouts (159, 209, 210), memory (241), too many parts (252), a read-only replica (242), Keeper (999)
#: -- is transient. Sorted by hand from the codes a wrong statement or schema produces.
TERMINAL_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        10,  # NOT_FOUND_COLUMN_IN_BLOCK
        16,  # NO_SUCH_COLUMN_IN_TABLE
        20,  # NUMBER_OF_COLUMNS_DOESNT_MATCH
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        36,  # BAD_ARGUMENTS
        41,  # CANNOT_PARSE_DATETIME
        43,  # ILLEGAL_TYPE_OF_ARGUMENT
        44,  # ILLEGAL_COLUMN
        46,  # UNKNOWN_FUNCTION
        47,  # UNKNOWN_IDENTIFIER
        48,  # NOT_IMPLEMENTED
        50,  # UNKNOWN_TYPE
        53,  # TYPE_MISMATCH
        57,  # TABLE_ALREADY_EXISTS
        60,  # UNKNOWN_TABLE
        62,  # SYNTAX_ERROR
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        81,  # UNKNOWN_DATABASE
        115,  # UNKNOWN_SETTING
        164,  # READONLY
        190,  # SIZES_OF_ARRAYS_DONT_MATCH
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
    }
)
_CODE = re.compile(r"\bCode:\s*(\d+)")


def store_error(what: str, where: str, exc: BaseException) -> BudevalError:
    """The budeval error for a failed ClickHouse call: StoreQueryError (terminal) when the server's error code is in
    TERMINAL_CODES, else StoreUnavailableError (transient, retried with backoff)."""
    message = f"ClickHouse {what} failed at {where}: {_first_line(exc)}"
    codes = {int(c) for c in _CODE.findall(str(exc))}
    if codes & TERMINAL_CODES:
        return StoreQueryError(message)
    return StoreUnavailableError(message)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
