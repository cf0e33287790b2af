"""The CRM entity model: accounts, contacts, opportunities (with change history) and product users.

Every other source refers back to these accounts and users, which is what makes the landing zone
referentially coherent. The CRM volumes are small (tens of thousands of entities), so the change
histories are simulated per entity in plain Python; the bulk event sources live in `activity.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import vocab
from .timeline import DAY_S, Period, iso_s
from .vectors import format_ids

# The CSV headers exactly as the CRM export writes them.
# fmt: off
ACCOUNT_HEADER = (
    "account_id", "account_name", "industry", "segment", "country", "owner_email", "phone",
    "annual_revenue", "created_at", "updated_at", "is_deleted",
)
CONTACT_HEADER = (
    "contact_id", "account_id", "first_name", "last_name", "email", "phone", "title",
    "created_at", "updated_at", "is_deleted",
)
OPPORTUNITY_HEADER = (
    "opportunity_id", "account_id", "name", "stage", "amount", "currency", "probability",
    "close_date", "created_at", "updated_at", "is_deleted",
)
# fmt: on


Row = tuple[str, ...]


@dataclass
class CrmHistory:
    """Every state an entity was in: (entity index, updated_at epoch seconds, CSV row)."""

    header: tuple[str, ...]
    versions: list[tuple[int, int, Row]]

    def daily_exports(self, period: Period) -> list[list[list[str]]]:
        """What the CRM's daily export job writes: day 0 is a full export of the state at the end
        of that day, every later day only the latest state of entities whose updated_at falls on it."""
        latest: dict[tuple[int, int], tuple[int, Row]] = {}
        for entity, ts, row in self.versions:
            key = (entity, max(0, int(period.day_of_s(ts))))
            if key not in latest or ts >= latest[key][0]:
                latest[key] = (ts, row)
        days: list[list[tuple[int, int, Row]]] = [[] for _ in range(period.days)]
        for (entity, day), (ts, row) in latest.items():
            days[day].append((ts, entity, row))
        return [[list(row) for _, _, row in sorted(day)] for day in days]


@dataclass
class Accounts:
    ids: list[str]
    created_s: np.ndarray
    segment: np.ndarray
    country: np.ndarray  # index into vocab.COUNTRIES, the country at creation
    names: list[str]
    domains: list[str]
    history: CrmHistory

    @property
    def activity(self) -> np.ndarray:
        """Relative activity weight per account, normalised to sum to 1."""
        w = np.asarray(vocab.SEGMENT_ACTIVITY)[self.segment]
        return w / w.sum()


@dataclass
class Users:
    """Product users (the `user_id` of web and product events), each belonging to one account."""

    ids: pa.StringArray
    account: np.ndarray


def _pick(rng: np.random.Generator, options: tuple | list) -> str:
    return options[int(rng.integers(len(options)))]


def _created_times(
    rng: np.random.Generator, period: Period, parent_created: np.ndarray, share_before: float, lookback_s: int
) -> np.ndarray:
    """Creation instants after each parent's, a `share_before` of them before the period."""
    n = len(parent_created)
    before_lo = np.maximum(parent_created, period.start_s - lookback_s)
    before = before_lo + rng.random(n) * np.maximum(period.start_s - before_lo, 1)
    after_lo = np.maximum(parent_created, period.start_s)
    after = after_lo + rng.random(n) * (period.end_s - after_lo)
    pre = (rng.random(n) < share_before) & (parent_created < period.start_s)
    return np.where(pre, before, after).astype(np.int64)


def _change_times(rng: np.random.Generator, period: Period, created: int, count: int) -> list[int]:
    """Sorted instants of `count` changes after creation, from day 1 on (day 0 is the full export);
    empty when the entity was created too late to change, so callers zip without strict."""
    lo = max(created + 60, period.start_s + DAY_S)
    if count == 0 or lo >= period.end_s:
        return []
    return sorted(int(t) for t in lo + rng.random(count) * (period.end_s - 1 - lo))


def _last_modified(rng: np.random.Generator, period: Period, created: int) -> int:
    """Pre-period entities were last touched somewhere between creation and the period start."""
    return created if created >= period.start_s else int(created + rng.random() * (period.start_s - created))


def _collect(header: tuple[str, ...], per_entity: list[list[tuple[int, Row]]]) -> CrmHistory:
    versions = [(i, ts, row) for i, rows in enumerate(per_entity) for ts, row in rows]
    return CrmHistory(header, versions)


def _simulate(
    header: tuple[str, ...],
    state: dict[str, str],
    start_ts: int,
    changes: list[tuple[int, Callable[[dict[str, str]], None]]],
) -> list[tuple[int, Row]]:
    """Apply timed mutations to an entity's state, recording a row after each (SCD source)."""
    state["updated_at"] = iso_s(start_ts)
    rows = [(start_ts, tuple(state[c] for c in header))]
    for ts, mutate in changes:
        mutate(state)
        state["updated_at"] = iso_s(ts)
        rows.append((ts, tuple(state[c] for c in header)))
    return rows


# --- shared attribute makers -------------------------------------------------------------------


def _country_text(rng: np.random.Generator, country: int) -> str:
    """ISO-2 country as a CRM user typed it: a few percent lowercase, padded or spelled out."""
    code, name = vocab.COUNTRIES[country][:2]
    r = rng.random()
    if r < 0.015:
        return code.lower()
    if r < 0.03:
        return f" {code} "
    if r < 0.045:
        return name
    return code


def _phone(rng: np.random.Generator, country: int) -> str:
    cc = vocab.COUNTRIES[country][2]
    if cc == "1":
        area = _pick(rng, ("212", "415", "312", "617", "206", "512", "303", "404", "416", "604"))
        return f"+1-{area}-555-{int(rng.integers(100, 200)):04d}"
    return f"+{cc}-{int(rng.integers(10, 99))}-{int(rng.integers(1_000_000, 9_999_999))}"


def _company_name(rng: np.random.Generator) -> str:
    """Company names, some with commas and double quotes to exercise CSV quoting."""
    last, other = _pick(rng, vocab.LAST_NAMES), _pick(rng, vocab.LAST_NAMES)
    r = rng.random()
    if r < 0.55:
        return f"{last} {_pick(rng, vocab.COMPANY_SUFFIXES)}"
    if r < 0.85:
        adjective, noun = _pick(rng, vocab.NAME_ADJECTIVES), _pick(rng, vocab.NAME_NOUNS)
        return f"{adjective} {noun} {_pick(rng, vocab.COMPANY_SUFFIXES)}"
    if r < 0.92:
        return f"{_pick(rng, vocab.NAME_NOUNS)} {_pick(rng, vocab.COMPANY_SUFFIXES)}, Inc."
    if r < 0.97:
        return f"{last}, {other} & Partners"
    return f'{last}, {other} & "Partners"'


def _domain(name: str, country: int) -> str:
    words = ["".join(ch for ch in w.lower() if ch.isalpha()) for w in name.replace(",", " ").split()]
    words = [w for w in words if w and w not in ("inc", "partners")]
    return f"{'-'.join(words[:2]) or 'company'}.{vocab.COUNTRIES[country][3]}"


def _revenue(rng: np.random.Generator, segment: int) -> str:
    """Annual revenue, occasionally unknown (empty), which is ordinary CRM data."""
    if rng.random() < 0.03:
        return ""
    return f"{round(vocab.SEGMENT_REVENUE[segment] * rng.lognormal(0, 0.7), -3):.2f}"


# --- accounts ----------------------------------------------------------------------------------


def build_accounts(rng: np.random.Generator, n: int, period: Period) -> Accounts:
    # Creation order defines the id sequence, as in a real CRM.
    in_period = rng.random(n) < 0.08
    created = np.sort(
        np.where(
            in_period,
            period.start_s + rng.integers(0, period.days * DAY_S, n),
            period.start_s - rng.integers(DAY_S, 3 * 365 * DAY_S, n),
        )
    )
    segment = rng.choice(len(vocab.SEGMENTS), n, p=vocab.SEGMENT_WEIGHTS)
    country = rng.choice(len(vocab.COUNTRIES), n, p=vocab.COUNTRY_WEIGHTS)
    # About a quarter of accounts move segment/country/owner at least once, a few several times.
    scd_changes = rng.choice(5, n, p=[0.74, 0.16, 0.06, 0.03, 0.01])
    other_changes = (rng.random(n) < 0.2).astype(int)
    deleted = rng.random(n) < 0.02

    ids = [f"ACC-{i + 1:06d}" for i in range(n)]
    names, domains, per_entity = [], [], []
    for i in range(n):
        name = _company_name(rng)
        names.append(name)
        domains.append(_domain(name, int(country[i])))
        state = {
            "account_id": ids[i],
            "account_name": name,
            "industry": _pick(rng, vocab.INDUSTRIES),
            "segment": vocab.SEGMENTS[segment[i]],
            "country": _country_text(rng, int(country[i])),
            "owner_email": _pick(rng, vocab.SALES_REPS),
            "phone": _phone(rng, int(country[i])),
            "annual_revenue": _revenue(rng, int(segment[i])),
            "created_at": iso_s(int(created[i])),
            "is_deleted": "false",
        }
        kinds = ["scd"] * int(scd_changes[i]) + ["other"] * int(other_changes[i])
        kinds = [kinds[k] for k in rng.permutation(len(kinds))] + ["delete"] * int(deleted[i])
        times = _change_times(rng, period, int(created[i]), len(kinds))
        changes = [
            (ts, _account_change(rng, kind, int(segment[i]), int(country[i])))
            for ts, kind in zip(times, kinds, strict=False)
        ]
        per_entity.append(
            _simulate(ACCOUNT_HEADER, state, _last_modified(rng, period, int(created[i])), changes)
        )
    return Accounts(ids, created, segment, country, names, domains, _collect(ACCOUNT_HEADER, per_entity))


def _account_change(
    rng: np.random.Generator, kind: str, segment: int, country: int
) -> Callable[[dict[str, str]], None]:
    """One change to an account; the random choices are drawn now so the stream order is fixed."""
    if kind == "delete":
        return lambda s: s.update(is_deleted="true")
    r = rng.random()
    if kind == "other":
        if r < 0.5:
            phone = _phone(rng, country)
            return lambda s: s.update(phone=phone)
        revenue = _revenue(rng, segment)
        return lambda s: s.update(annual_revenue=revenue)
    # SCD2-tracked attributes: segment moves one step, owner is reassigned, or the HQ country moves.
    if r < 0.4:
        step = 1 if rng.random() < 0.5 else -1

        def move(s: dict[str, str]) -> None:
            current = vocab.SEGMENTS.index(s["segment"])
            target = current + step if 0 <= current + step < len(vocab.SEGMENTS) else current - step
            s["segment"] = vocab.SEGMENTS[target]

        return move
    if r < 0.8:
        owner = _pick(rng, vocab.SALES_REPS)
        return lambda s: s.update(owner_email=owner)
    country = _country_text(rng, int(rng.choice(len(vocab.COUNTRIES), p=vocab.COUNTRY_WEIGHTS)))
    return lambda s: s.update(country=country)


# --- contacts ----------------------------------------------------------------------------------


def build_contacts(rng: np.random.Generator, n: int, accounts: Accounts, period: Period) -> CrmHistory:
    account = rng.choice(len(accounts.ids), n, p=accounts.activity)
    created = _created_times(rng, period, accounts.created_s[account], 0.6, 2 * 365 * DAY_S)
    order = np.argsort(created, kind="stable")
    account, created = account[order], created[order]
    n_changes = rng.choice(3, n, p=[0.66, 0.27, 0.07])
    deleted = rng.random(n) < 0.03

    per_entity = []
    for i in range(n):
        a = int(account[i])
        first, last = _pick(rng, vocab.FIRST_NAMES), _pick(rng, vocab.LAST_NAMES)
        local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
        state = {
            "contact_id": f"CON-{i + 1:07d}",
            "account_id": accounts.ids[a],
            "first_name": first,
            "last_name": last,
            "email": f"{local}@{accounts.domains[a]}",
            "phone": _phone(rng, int(accounts.country[a])),
            "title": _pick(rng, vocab.TITLES),
            "created_at": iso_s(int(created[i])),
            "is_deleted": "false",
        }
        kinds = ["change"] * int(n_changes[i]) + ["delete"] * int(deleted[i])
        times = _change_times(rng, period, int(created[i]), len(kinds))
        changes = [
            (ts, _contact_change(rng, kind, a, accounts)) for ts, kind in zip(times, kinds, strict=False)
        ]
        per_entity.append(
            _simulate(CONTACT_HEADER, state, _last_modified(rng, period, int(created[i])), changes)
        )
    return _collect(CONTACT_HEADER, per_entity)


def _contact_change(
    rng: np.random.Generator, kind: str, account: int, accounts: Accounts
) -> Callable[[dict[str, str]], None]:
    if kind == "delete":
        return lambda s: s.update(is_deleted="true")
    r = rng.random()
    if r < 0.4:
        title = _pick(rng, vocab.TITLES)
        return lambda s: s.update(title=title)
    if r < 0.75:
        phone = _phone(rng, int(accounts.country[account]))
        return lambda s: s.update(phone=phone)
    # A new address format at the same company (e.g. after an email migration).
    return lambda s: s.update(
        email=f"{s['first_name'][0]}{s['last_name']}".lower().replace(" ", "").replace("'", "")
        + f"@{accounts.domains[account]}"
    )


# --- opportunities -----------------------------------------------------------------------------


def build_opportunities(rng: np.random.Generator, n: int, accounts: Accounts, period: Period) -> CrmHistory:
    account = rng.choice(len(accounts.ids), n, p=accounts.activity)
    created = _created_times(rng, period, accounts.created_s[account], 0.45, 180 * DAY_S)
    order = np.argsort(created, kind="stable")
    account, created = account[order], created[order]

    per_entity = []
    for i in range(n):
        a = int(account[i])
        state, changes = _opportunity(rng, i, a, int(created[i]), accounts, period)
        per_entity.append(_simulate(OPPORTUNITY_HEADER, state, int(created[i]), changes))
    return _collect(OPPORTUNITY_HEADER, per_entity)


def _deal_currency(rng: np.random.Generator, country: int) -> str:
    home = vocab.COUNTRIES[country][5]
    if home in vocab.TRADE_CODES and rng.random() < 0.6:
        return home
    return vocab.TRADE_CODES[int(rng.choice(len(vocab.TRADE_CODES), p=vocab.TRADE_WEIGHTS))]


def _opportunity_name(rng: np.random.Generator, account_name: str) -> str:
    product, kind = _pick(rng, vocab.PRODUCT_LINES), _pick(rng, vocab.OPPORTUNITY_KINDS)
    base = f"{' '.join(account_name.split()[:2])} - {product} {kind}"
    # Reps paste notes into the name field now and then: an embedded newline the CSV must quote.
    return f"{base}\n{_pick(rng, vocab.OPPORTUNITY_NOTES)}" if rng.random() < 0.01 else base


def _opportunity(
    rng: np.random.Generator, i: int, account: int, created: int, accounts: Accounts, period: Period
) -> tuple[dict[str, str], list[tuple[int, Callable[[dict[str, str]], None]]]]:
    """Initial state and the stage progression of one deal up to the end of the period."""
    currency = _deal_currency(rng, int(accounts.country[account]))
    amount_usd = vocab.SEGMENT_DEAL[int(accounts.segment[account])] * rng.lognormal(0, 0.6)
    stage = 0 if rng.random() < 0.7 else 1
    close_s = created + int(rng.integers(30, 120)) * DAY_S
    state = {
        "opportunity_id": f"OPP-{i + 1:06d}",
        "account_id": accounts.ids[account],
        "name": _opportunity_name(rng, accounts.names[account]),
        "stage": vocab.STAGES[stage][0],
        "amount": f"{round(amount_usd * vocab.START_RATE[currency], -1):.2f}",
        "currency": currency,
        "probability": str(vocab.STAGES[stage][1]),
        "close_date": iso_s(close_s)[:10],
        "created_at": iso_s(created),
        "is_deleted": "false",
    }
    changes: list[tuple[int, Callable[[dict[str, str]], None]]] = []
    t = created
    while stage < 4:
        t += int(rng.exponential(12 * DAY_S)) + 3600
        if t >= period.end_s - 1:
            break
        if rng.random() < 0.015:
            changes.append((t, lambda s: s.update(is_deleted="true")))
            break
        if rng.random() < (0.25 if stage < 3 else 0.4):
            stage = 5
        else:
            stage += 1
        fields = {"stage": vocab.STAGES[stage][0], "probability": str(vocab.STAGES[stage][1])}
        if stage >= 4:
            fields["close_date"] = iso_s(t)[:10]  # a closed deal's close date is the day it closed
        elif t > close_s:
            close_s = t + int(rng.integers(14, 60)) * DAY_S  # the rep pushes a slipped deal out
            fields["close_date"] = iso_s(close_s)[:10]
        if stage == 2 and rng.random() < 0.5:
            fields["amount"] = (
                f"{round(amount_usd * rng.lognormal(0, 0.2) * vocab.START_RATE[currency], -1):.2f}"
            )
        changes.append((t, lambda s, f=fields: s.update(f)))
    return state, changes


# --- users -------------------------------------------------------------------------------------


def build_users(rng: np.random.Generator, n: int, accounts: Accounts) -> Users:
    account = rng.choice(len(accounts.ids), n, p=accounts.activity)
    return Users(format_ids("USR-", np.arange(1, n + 1), 7), account)
