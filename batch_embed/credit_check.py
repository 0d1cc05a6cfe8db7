"""The credit balance, asked before the first paid call: shown, and held against the cost.

``GET /v1/get-user-credits`` is unpaid. A failure to ask is a warning and never stops a
run: the balance is advice, the API's 406 is the real limit. With ``--price-per-call``, a
run whose paid calls would cost more than the balance is refused before paying, unless a
``--max-submits``/``--max-cost`` cap keeps it within the balance or ``--yes`` says to go on.
"""

from __future__ import annotations

import asyncio
import math

from . import errors
from .client import Credits, SegmindClient, Timeouts
from .config import RunConfig
from .errors import ConfigError
from .log import Log
from .plan import Plan, make_plan

CREDITS_TIMEOUT = 10.0


async def ask_balance(config: RunConfig, log: Log) -> Credits | None:
    """The balance; None, after a warning saying why, when it could not be asked."""
    client = SegmindClient(
        api_key=config.api_key,
        base_url=config.base_url,
        model=config.spec,
        max_connections=1,
        max_answer_bytes=config.max_answer_bytes,
        allow_insecure_http=config.allow_insecure_http,
        timeouts=Timeouts(total=CREDITS_TIMEOUT, connect=CREDITS_TIMEOUT, read=CREDITS_TIMEOUT),
    )
    try:
        async with client:
            return await client.credits()
    except errors.ApiError as err:
        log.warning(f"could not ask the credit balance ({err}); going on", event="credits_unknown")
        return None


def shortfall(balance: Credits, *, paid_calls: int, price: float) -> str | None:
    """Why ``paid_calls`` at ``price`` cannot be afforded (None: the balance covers them)."""
    total = balance.credits + balance.free_credits
    cost = paid_calls * price
    if cost <= total:
        return None
    within = math.floor(total / price)
    return (
        f"this run would make {paid_calls} paid calls at {_amount(price)} = {_amount(cost)} "
        f"credits, but the balance is {_amount(total)}: add --max-submits {within} to stop "
        "within it, or --yes to run anyway"
    )


def describe(balance: Credits) -> str:
    """The balance for the log: ``credits 12.5 (free 0)``."""
    return f"credits {_amount(balance.credits)} (free {_amount(balance.free_credits)})"


def _amount(value: float) -> str:
    """A balance as people write it: 1000000, 0.9, 0.05 (no exponent, no trailing zeros)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


async def check_before_paying(config: RunConfig, log: Log, *, quiet: bool, yes: bool) -> None:
    """Show the balance before the first paid call; refuse a run it cannot pay for.

    The refusal needs ``price_per_call``; a cap within the balance or ``yes`` lifts it. The
    run's paid calls are planned (no request) only when a cap does not settle it.
    """
    balance = await ask_balance(config, log)
    if balance is None:
        return
    if not quiet or log.json:
        _show(balance, log)
    price = config.price_per_call
    if price is None or yes:
        return
    cap = config.submit_cap
    if cap is not None and shortfall(balance, paid_calls=cap, price=price) is None:
        return
    plan = await asyncio.to_thread(make_plan, config)
    paid = plan.to_submit if cap is None else min(cap, plan.to_submit)
    refusal = shortfall(balance, paid_calls=paid, price=price)
    if refusal is not None:
        raise ConfigError(refusal)


async def show_for_plan(config: RunConfig, plan: Plan, log: Log) -> None:
    """The balance beside a plan, and a warning when it does not cover ``to_submit``."""
    balance = await ask_balance(config, log)
    if balance is None:
        return
    _show(balance, log)
    if config.price_per_call is not None:
        short = shortfall(balance, paid_calls=plan.to_submit, price=config.price_per_call)
        if short is not None:
            log.warning(short, event="credits_short")


def _show(balance: Credits, log: Log) -> None:
    log.info(
        describe(balance),
        event="credits",
        credits=balance.credits,
        free_credits=balance.free_credits,
    )
