"""Identifiers of people sent in clear where the contract carries them hashed.

Phone numbers, national id numbers and bank cards reach Riskmon hashed, in ``*_hash``
fields, and must never be stored, logged or shown in clear. A producer that sends one in
clear, in a ``*_hash`` field or in a field of its own (``phone``, ``id_number``, ...),
has its event refused: the contract cannot hold the data a law forbids us to keep.

>>> clear_kind("13812345678"), clear_kind("+8613812345678"), clear_kind("p-4e1b")
('a phone number', 'a phone number', None)
>>> clear_kind("11010519491231002X"), clear_kind("6222021234567890128")
('a national id number', 'a bank card number')
>>> in_clear({"phone_hash": "13812345678", "device_id": "d1"}, ("phone_hash", "id_hash"))
['phone_hash']
>>> in_clear({"id_number": "x", "user_id": "u1"}, ())
['id_number']
>>> withheld({"phone": "13812345678", "user_id": "u1"}, ["phone"])
{'phone': '[withheld]', 'user_id': 'u1'}

Beyond the contract's own fields, where a producer's extras go, any value of those shapes
is refused, at any depth (:func:`clear_paths`):

>>> clear_paths({"user_id": "u1", "contact": {"tel": "13812345678"}}, (), frozenset({"user_id"}))
[('contact', 'tel')]
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

#: Field names that can only mean an identifier in clear (the hashed ones end in _hash).
CLEAR_FIELDS = frozenset(
    {
        "phone",
        "phone_number",
        "mobile",
        "mobile_number",
        "id_number",
        "id_no",
        "id_card",
        "national_id",
        "bank_card",
        "bank_card_number",
        "card_number",
        "card_no",
        "phone_no",
        "mobile_no",
        "mobile_phone",
        "contact_phone",
        "idcard",
        "id_card_no",
        "identity_number",
        "bank_card_no",
    }
)
WITHHELD = "[withheld]"
#: the contract's ids: in outputs, profiles, Redis keys and logs, so never a number in
#: clear (of the shapes of ``privacy.refuse_in_ids``)
ID_FIELDS = (
    "user_id",
    "device_id",
    "application_id",
    "txn_id",
    "loan_id",
    "target_id",
    "event_id",
)
#: fields of the contract judged by every shape refused in clear, as a hash is: an IP
#: address never takes one, and Riskmon keys by it (Redis keys, the user's document)
SHAPED_FIELDS = ("ip",)
#: characters of the longest shape known, with room for blanks around it: a card of 19
#: digits in groups of four has 23 (``+86 (138) 1234 5678`` has 19)
LONGEST = 25

#: a mainland mobile number, with or without the country code (+86, 0086, (+86)), its
#: groups apart by a blank or a dash (the first maybe in brackets), or by dots in the
#: 3-4-4 grouping only (a dotted IPv4 address never has it)
_PHONE = re.compile(
    r"(?:(?:\+|00)?86[- ]?|\(\+?86\)[- ]?)?"
    r"(?:1[3-9]\d(?:[- ]?\d{4}[- ]?\d{4}|\.\d{4}\.\d{4})|\(1[3-9]\d\)[- ]?\d{4}[- ]?\d{4})"
)
#: an identity number: 18 characters, or grouped 6-8-4 (region, birth date, the rest)
_ID_NUMBER = re.compile(r"\d{6}[- ]?\d{8}[- ]?\d{3}[\dXx]")
#: a card number: 16 to 19 digits, or in groups of four apart by a blank or a dash
_CARD = re.compile(r"\d{16,19}|\d{4}(?:([- ])\d{4}){3}(?:\1\d{1,3})?")
#: a run of eleven digits or more, maybe grouped (by blanks, dots, dashes, brackets or a
#: plus, one or two apart: ``(138) 1234-5678``): what a reason does not quote
_DIGIT_RUN = re.compile(r"\d(?:[ .()+-]{0,2}\d){10,}")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _id_checksum_ok(s: str) -> bool:
    """The check character of an 18-character resident identity number (GB 11643)."""
    total = sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == s[17].upper()


def _luhn_ok(s: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(s)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


#: the shapes :func:`clear_kind` knows (the names of ``privacy.refuse_in_clear``)
KINDS = frozenset({"phone", "id_number", "bank_card"})
_TEXT = {
    "phone": "a phone number",
    "id_number": "a national id number",
    "bank_card": "a bank card number",
}


#: dashes NFKC leaves as they are (hyphen, non-breaking hyphen, figure, en and em dash,
#: horizontal bar, minus sign, small hyphen-minus): between a number's groups they read as
#: ``-``
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63", "-"))


#: invisible characters (the format characters of Unicode's first plane: soft hyphen,
#: zero-width spaces and joiners, direction marks, word joiner, byte order mark)
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)


def _plain(text: str) -> str:
    """``text`` as a number in it reads: full-width characters made plain (NFKC), dashes
    of any kind made ``-`` and invisible characters dropped.

    >>> _plain("１３８\\u2013１２３４\\u200b5678"), _plain("a-1")
    ('138-12345678', 'a-1')
    """
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKC", text).translate(_DASHES)
    return _INVISIBLE.sub("", text)


def _text_of(value: Any) -> str | None:
    """The text a value's shape is judged by: a string made plain (:func:`_plain`:
    full-width digits, the ideographic space, dashes of any kind, invisible characters)
    and blanks around it removed;
    an integer, or a float that holds a whole number of 10 digits or more, as its digits;
    ``None`` for anything else."""
    kind = type(value)
    if kind is str:
        if len(value) > LONGEST:
            value = value.strip()
            if len(value) > LONGEST:
                return None
        if not value.isascii():
            value = _plain(value)
        return value.strip()
    if kind is int:
        return str(value)
    if kind is float and 1e9 <= abs(value) < 1e20 and value.is_integer():
        return str(int(value))
    return None


def _id_ok(digits: str) -> bool:
    """An identity number's region (first digit 1 to 8), birth date (a real day since
    1900) and check character (GB 11643): a random 18-digit number passes about 1 in
    15,000 times."""
    if digits[0] not in "12345678" or not ("19000101" <= digits[6:14] <= "20991231"):
        return False
    try:
        date(int(digits[6:10]), int(digits[10:12]), int(digits[12:14]))
    except ValueError:
        return False
    return _id_checksum_ok(digits)


def clear_kind(
    value: Any, kinds: frozenset[str] = KINDS, numbers_as_phones: bool = True
) -> str | None:
    """What ``value`` is in clear, if its shape gives it away: a mainland mobile number,
    an 18-character identity number with a real birth date and a valid check character,
    or a card number of 16 to 19 digits of a card network (first digit 2 to 6 or 9, as
    no timestamp has) with a valid Luhn digit (of ``kinds`` only), as a string, plain
    or grouped, or a JSON number; ``None`` for anything else (a hash, a token).
    ``numbers_as_phones``: whether a JSON number can be a phone number (a byte count of
    16 GiB has the shape).

    >>> clear_kind(13812345678), clear_kind("6222021234567890128", frozenset({"phone"}))
    ('a phone number', None)
    >>> clear_kind("\\u3000１３８１２３４５６７８")  # an ideographic space, full-width digits
    'a phone number'
    >>> clear_kind(17179869184, numbers_as_phones=False)  # 16 GiB

    >>> clear_kind("1795860930123462"), clear_kind(13812345678.0)  # a timestamp in µs
    (None, 'a phone number')
    """
    text = _text_of(value)
    if not text or not (text[-1].isdigit() or text[-1] in "Xx"):
        return None
    if "phone" in kinds and (numbers_as_phones or type(value) is str) and _PHONE.fullmatch(text):
        return _TEXT["phone"]
    digits = _digits(text)
    if "id_number" in kinds and _ID_NUMBER.fullmatch(text) and _id_ok(digits):
        return _TEXT["id_number"]
    if (
        "bank_card" in kinds
        and digits[0] in "234569"
        and _CARD.fullmatch(text)
        and _luhn_ok(digits)
    ):
        return _TEXT["bank_card"]
    return None


def _digits(value: str) -> str:
    """The characters of a grouped number without what stands between the groups."""
    return value.translate(_SEPARATORS)


_SEPARATORS = str.maketrans("", "", " -()+")


def holds_identifier(value: Any) -> bool:
    """Whether a value may not be quoted in a reason: one of any shape :func:`clear_kind`
    knows, or a string with a run of eleven digits or more (``tel:13812345678``), or a
    long string, which may hold one among other things.

    >>> holds_identifier(13812345678), holds_identifier("+86 138" * 6), holds_identifier("ok")
    (True, True, False)
    >>> holds_identifier("tel:138-1234-5678"), holds_identifier("v5.2.1 build 20261128")
    (True, False)
    """
    if clear_kind(value) is not None:
        return True
    return isinstance(value, str) and (len(value) > 32 or has_digit_run(value))


def has_digit_run(text: str) -> bool:
    """Whether ``text`` holds eleven digits or more in a row, maybe grouped: a number in
    clear may be part of it (``phone:13812345678``).

    >>> has_digit_run("phone:138 1234 5678"), has_digit_run("u-50b2dcc3af3f")
    (True, False)
    """
    return _DIGIT_RUN.search(_plain(text)) is not None


def digits_withheld(raw: bytes) -> bytes | None:
    """``raw`` with every run of eleven digits or more (maybe grouped, by dashes of any
    kind too, full-width or with invisible characters among them)
    replaced by :data:`WITHHELD`, or ``None`` when it holds none: what a dead letter may
    keep of an input it could not read as JSON fields, whose identifiers in clear it
    cannot find field by field. Bytes that are not UTF-8 are read as replacement
    characters.

    >>> digits_withheld(b'{"sim_hash": "138 1234 5678", "amount": 12')
    b'{"sim_hash": "[withheld]", "amount": 12'
    >>> digits_withheld(b'["(138)1234-5678", "+86 (138) 1234 5678"')
    b'["([withheld]", "+[withheld]"'
    >>> digits_withheld(b'{"device_id": "d-1"') is None
    True
    """
    text = _plain(raw.decode("utf-8", errors="replace"))
    masked, n = _DIGIT_RUN.subn(WITHHELD, text)
    return masked.encode("utf-8") if n else None


#: first characters of a value that cannot be an identifier in clear (a digest or a
#: token starting with a letter)
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _may_be_clear(value: Any) -> bool:
    """The quick look at one value: ``False`` means :func:`clear_kind` finds nothing in
    it (a string starting with an ASCII letter, or longer than :data:`LONGEST` without
    blanks around it; anything but a string or a number)."""
    kind = type(value)
    if kind is str:
        first = value[:1]
        if not first or first in _LETTERS:  # what starts with a letter stays a token
            return False
        return len(value) <= LONGEST or first.isspace() or value[-1].isspace()
    return kind is int or kind is float


def shaped_clear(value: Any, kinds: frozenset[str] = KINDS) -> bool:
    """Whether a value of :data:`SHAPED_FIELDS` is one of ``kinds``' shapes: an IP
    address is passed at once (the look every event's ``ip`` gets), by its three dots
    (IPv4) or a colon (IPv6), which no shape has.

    >>> shaped_clear("121.33.141.33"), shaped_clear("2408:8207::1"), shaped_clear(None)
    (False, False, False)
    >>> shaped_clear("138.1234.5678"), shaped_clear("13812345678")
    (True, True)
    """
    if value is None or (type(value) is str and (value.count(".") == 3 or ":" in value)):
        return False
    return clear_kind(value, kinds) is not None


def in_clear(
    event: Mapping[str, Any], hash_fields: Iterable[str], kinds: frozenset[str] = KINDS
) -> list[str]:
    """The fields of ``event`` that hold an identifier in clear: any of
    :data:`CLEAR_FIELDS`, and those of ``hash_fields`` whose value is one of ``kinds``."""
    found = [name for name in hash_fields if clear_kind(event.get(name), kinds) is not None]
    if not CLEAR_FIELDS.isdisjoint(event):
        found += sorted(CLEAR_FIELDS.intersection(event))
    return found


class WithheldKey(str):
    """An object's key that is itself an identifier in clear (a contact list keyed by
    phone number): it looks itself up, and prints as ``[withheld]``."""

    __slots__ = ()

    def __str__(self) -> str:
        return WITHHELD

    def __repr__(self) -> str:
        return repr(WITHHELD)


#: where a value sits in an event: field names and list positions, from the top
FieldPath = tuple[str | int, ...]


def _hints_phone(key: Any) -> bool:
    """Whether a field's name says it holds a phone number: then a JSON number there can
    be one (elsewhere the shape alone, a byte count of 16 GiB say, does not tell)."""
    if type(key) is not str:
        return False
    name = key.lower()
    return "phone" in name or "mobile" in name or "tel" in name


def _walk(
    value: Any, at: FieldPath, kinds: frozenset[str], found: list[FieldPath], phones: bool
) -> None:
    """Collect in ``found``, in document order, the places under ``at`` (a value the
    contract does not define) that hold an identifier in clear: a field named for one,
    whatever it holds, a key that is one (:class:`WithheldKey`), and any value of one of
    ``kinds``' shapes (a JSON number as a phone number only where ``phones``, or under a
    field whose name says phone). No recursion: JSON may nest deeper than Python's
    stack."""
    stack: list[tuple[Any, FieldPath, bool]] = [(value, at, phones)]
    while stack:
        item, path, as_phone = stack.pop()
        kind = type(item)
        if kind is dict:
            children: list[tuple[Any, FieldPath, bool]] = []
            for key, child in item.items():
                if key in CLEAR_FIELDS:
                    found.append((*path, key))
                elif clear_kind(key, kinds) is not None:
                    found.append((*path, WithheldKey(key)))
                else:
                    children.append((child, (*path, key), as_phone or _hints_phone(key)))
            stack.extend(reversed(children))
        elif kind is list:
            stack.extend(
                (child, (*path, i), as_phone) for i, child in reversed(list(enumerate(item)))
            )
        elif clear_kind(item, kinds, numbers_as_phones=as_phone) is not None:
            found.append(path)


def clear_paths(
    event: Mapping[str, Any],
    hash_fields: Iterable[str],
    known: frozenset[str],
    kinds: frozenset[str] = KINDS,
    id_kinds: frozenset[str] = frozenset(),
) -> list[FieldPath]:
    """Every place in ``event`` that holds an identifier in clear, as a path of field
    names and list positions: what :func:`in_clear` finds among the top-level fields,
    a value of one of ``kinds``' shapes in :data:`SHAPED_FIELDS` (``ip``), an id
    (:data:`ID_FIELDS`) of one of ``id_kinds``' shapes, and, outside the contract's own
    fields (``known``), a value of one of ``kinds``' shapes, a field
    named for one or a key that is one, at any depth. Objects and lists are searched
    whichever field holds them: the contract's own (``geo``, ``kyc``) hold numbers and
    flags only.

    >>> clear_paths({"user_id": "13812345678"}, (), frozenset({"user_id"}), KINDS, {"phone"})
    [('user_id',)]
    >>> clear_paths({"kyc": {"id_number": "x"}, "refs": ["13812345678"]}, (), frozenset())
    [('kyc', 'id_number'), ('refs', 0)]
    >>> clear_paths({"note": "13812345678", "channel": "13812345678"}, (), frozenset({"channel"}))
    [('note',)]
    >>> clear_paths({"contacts": {"13912345678": "mum"}, "ram": 17179869184}, (), frozenset())
    [('contacts', '[withheld]')]
    """
    found: list[FieldPath] = [(name,) for name in in_clear(event, hash_fields, kinds)]
    found += [(n,) for n in SHAPED_FIELDS if n in known and shaped_clear(event.get(n), kinds)]
    if id_kinds:  # those beyond the contract are judged with them, below
        found += [
            (n,) for n in ID_FIELDS if n in known and clear_kind(event.get(n), id_kinds) is not None
        ]
    for name, value in event.items():
        if name in CLEAR_FIELDS:
            continue  # named already
        if name not in known and clear_kind(name, kinds) is not None:
            found.append((WithheldKey(name),))
        elif name not in known or type(value) is dict or type(value) is list:
            _walk(value, (name,), kinds, found, _hints_phone(name))
    return found


def shaped_paths(value: Any, kinds: frozenset[str] = KINDS) -> list[FieldPath]:
    """Every place in ``value`` whose whole value is of one of ``kinds``' shapes (a JSON
    number as a phone number too), in any field, the contract's own included, at any
    depth, and every field named for one or key that is one: what a dead letter withholds
    of an event it keeps for another fault, as that fault's reason withholds them
    (:func:`holds_identifier`). The contract's fields are not refused for their shape;
    an event refused all the same keeps no such value.

    >>> shaped_paths({"amount": "13812345678", "age": 13812345678, "ip": "1.2.3.4"})
    [('amount',), ('age',)]
    >>> shaped_paths({"os_version": "11010519491231002X", "geo": {"lat": 6222021234567890128}})
    [('os_version',), ('geo', 'lat')]
    """
    found: list[FieldPath] = []
    _walk(value, (), kinds, found, True)
    return found


def might_hold_clear(
    event: Mapping[str, Any],
    looked_at: Iterable[str],
    known: frozenset[str],
    objects: Mapping[str, frozenset[str]],
) -> bool:
    """The quick look at every input before :func:`clear_paths`: ``False`` means it finds
    nothing. That is: ``event`` has only fields of the contract (``known``; none is named
    for an identifier in clear), the fields of ``looked_at`` (its hashes and ids) hold
    nothing :func:`clear_kind` could take (:func:`_may_be_clear`), and those of its
    fields that hold objects (``objects``: ``geo``, ``kyc``, each with its own fields)
    hold only their own fields, with floats and flags. A contract field of another type
    that holds an object breaks the contract: a check of the whole event before it is
    refused finds what that object holds.

    >>> known, objects = frozenset({"phone_hash", "geo"}), {"geo": frozenset({"lat", "lon"})}
    >>> geo = {"geo": {"lat": 23.1, "lon": 113.3}}
    >>> might_hold_clear({"phone_hash": "p-4e1b", **geo}, ["phone_hash"], known, objects)
    False
    >>> might_hold_clear({"phone_hash": "13812345678"}, ["phone_hash"], known, objects)
    True
    >>> might_hold_clear({"phone": "x"}, [], known, objects), might_hold_clear(
    ...     {"geo": {"lat": 23.1, "lon": 113.3, "tel": 1.0}}, [], known, objects)
    (True, True)
    """
    if not known.issuperset(event):
        return True
    get, letters = event.get, _LETTERS
    for name in looked_at:
        value = get(name)
        if value is None:
            continue
        if type(value) is str:  # the usual case, inline (see _may_be_clear)
            if not value:
                continue
            first = value[0]
            if first in letters:
                continue
            if len(value) <= LONGEST or first.isspace() or value[-1].isspace():
                return True
        elif _may_be_clear(value):
            return True
    for name, fields in objects.items():
        value = get(name)
        if value is not None:
            if type(value) is not dict or not fields.issuperset(value):
                return True
            for item in value.values():
                if type(item) is not float and type(item) is not bool:
                    return True
    return False


def path_text(path: FieldPath) -> str:
    """A path as a reason names it: ``kyc/id_number``, ``refs/0``; a step with eleven
    digits or more in a row is withheld."""
    return "/".join(WITHHELD if type(p) is str and has_digit_run(p) else str(p) for p in path)


def value_at(event: Mapping[str, Any], path: FieldPath) -> Any:
    """What sits at ``path``; for a key that is itself an identifier, the key."""
    value: Any = event
    for step in path:
        value = value[step]
    return str.__str__(path[-1]) if path and isinstance(path[-1], WithheldKey) else value


def withheld(event: Mapping[str, Any], fields: Iterable[str | FieldPath]) -> dict[str, Any]:
    """A copy of ``event`` with the values of ``fields`` (names, or paths as
    :func:`clear_paths` gives them) replaced by ``[withheld]``, and keys that are
    identifiers replaced too; the event is left as it is.

    >>> e = {"a": {"b": ["x", "13812345678"]}, "c": 1}
    >>> withheld(e, [("a", "b", 1)]), e["a"]["b"][1]
    ({'a': {'b': ['x', '[withheld]']}, 'c': 1}, '13812345678')
    >>> withheld({"c": {"13912345678": "mum", "13812345678": "dad"}},
    ...          [("c", WithheldKey("13912345678")), ("c", WithheldKey("13812345678"))])
    {'c': {'[withheld]': '[withheld]', '[withheld 2]': '[withheld]'}}
    """
    out = dict(event)
    for field in fields:
        path = (field,) if isinstance(field, str) else field
        parent: Any = out
        for step in path[:-1]:  # copy each object or list on the way down
            child = parent[step]
            child = dict(child) if isinstance(child, dict) else list(child)
            parent[step] = child
            parent = child
        last = path[-1]
        if isinstance(last, WithheldKey):
            del parent[last]
            name, n = WITHHELD, 1
            while name in parent:
                n += 1
                name = f"[withheld {n}]"
            parent[name] = WITHHELD
        else:
            parent[last] = WITHHELD
    return out
