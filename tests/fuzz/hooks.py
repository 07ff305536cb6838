"""Schemathesis hooks of the fuzz tier (loaded by ``schemathesis run`` through its config).

The fuzzer may revoke any token it can name, including the one it runs with (``GET
/tokens`` lists it): that would turn the rest of the run into 401s and hide every route
behind them. So a revoke of the fuzzer's own token is sent for an id that does not exist.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

UNKNOWN_ID = "000000000000"


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: Any
) -> None:
    own = os.environ.get("HPCGATE_FUZZ_TOKEN_ID")
    if case.method.upper() == "DELETE" and (case.path_parameters or {}).get("token_id") == own:
        case.path_parameters = {**(case.path_parameters or {}), "token_id": UNKNOWN_ID}
