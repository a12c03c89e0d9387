"""The simulated world: people, devices, networks and the ids that name them.

Identifiers of people (phone, national id, bank card, payout account) are opaque hex
strings: the truncated sha256 of a synthetic value that depends on the run.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field

from riskmon.sim.clock import DAY

#: (name, lat, lon, broadband /16 prefixes)
CITIES: tuple[tuple[str, float, float, tuple[str, ...]], ...] = (
    ("beijing", 39.9042, 116.4074, ("36.112", "123.118", "106.39")),
    ("shanghai", 31.2304, 121.4737, ("101.80", "180.169", "116.228")),
    ("guangzhou", 23.1291, 113.2644, ("113.108", "183.6", "121.33")),
    ("shenzhen", 22.5431, 114.0579, ("119.123", "113.87", "183.14")),
    ("chengdu", 30.5728, 104.0668, ("125.69", "171.221", "182.150")),
    ("wuhan", 30.5928, 114.3055, ("58.49", "59.172", "221.234")),
    ("hangzhou", 30.2741, 120.1551, ("115.236", "60.191", "122.224")),
    ("xian", 34.3416, 108.9398, ("113.140", "117.36", "124.89")),
    ("chongqing", 29.5630, 106.5516, ("113.204", "222.177", "219.153")),
    ("zhengzhou", 34.7466, 113.6254, ("42.236", "171.8", "222.88")),
)
CITY_WEIGHTS = (16, 15, 11, 11, 8, 8, 8, 7, 8, 8)
MOBILE_PREFIXES = ("223.104", "117.136", "39.144", "112.96", "111.55")
DATACENTER_PREFIXES = ("47.94", "47.100", "119.29", "139.224", "121.40")

ANDROID_VERSIONS = (("10", 1), ("11", 2), ("12", 3), ("13", 4), ("14", 5), ("15", 3))
IOS_VERSIONS = (("16.7", 2), ("17.5", 4), ("18.1", 5), ("18.3", 3))
APP_VERSIONS_OLD = ("5.0.3", "5.1.0", "5.2.1")
APP_VERSION_CURRENT = "5.2.1"
APP_VERSION_NEXT = "5.3.0"
CHANNELS = (
    ("organic", 30),
    ("app_store", 22),
    ("ad_douyin", 18),
    ("ad_kuaishou", 12),
    ("referral", 10),
    ("ad_wechat", 8),
)


class Ids:
    """Deterministic opaque ids for one run.

    >>> ids = Ids("abcd1234")
    >>> ids.new("a") == Ids("abcd1234").new("a")
    True
    >>> ids.new("a") != ids.new("a")
    True
    >>> len(ids.secret("phone"))
    32
    """

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._counters: dict[str, int] = {}

    def _next(self, kind: str) -> int:
        n = self._counters.get(kind, 0) + 1
        self._counters[kind] = n
        return n

    def _hex(self, text: str, length: int) -> str:
        return hashlib.sha256(f"{self.tag}:{text}".encode()).hexdigest()[:length]

    def new(self, prefix: str, length: int = 16) -> str:
        """A fresh object id such as ``a-1f0c…`` (application) or ``t-…`` (transaction)."""
        return f"{prefix}-{self._hex(f'{prefix}:{self._next(prefix)}', length)}"

    def secret(self, kind: str) -> str:
        """A hashed personal identifier (phone, national id, bank card, account)."""
        return self._hex(f"{kind}:{self._next(kind)}:synthetic-value", 32)


@dataclass(slots=True)
class Net:
    """Where a session happens: public IP, Wi-Fi network (``None`` on mobile data), place."""

    ip: str
    wifi_hash: str | None
    lat: float
    lon: float


@dataclass(slots=True)
class Device:
    device_id: str
    os: str
    os_version: str
    is_emulator: bool
    is_rooted: bool
    sim_hash: str
    loan_apps: int
    app_version: str = APP_VERSION_CURRENT
    upgrade_at: int | None = None

    def version_at(self, t: int) -> str:
        if self.upgrade_at is not None and t >= self.upgrade_at:
            return APP_VERSION_NEXT
        return self.app_version


@dataclass(slots=True)
class Person:
    user_id: str
    phone_hash: str
    id_hash: str
    card_hash: str
    age: int
    income: float
    city: int
    home: Net
    contacts: int
    bureau: float | None
    channel: str
    activity: float
    device: Device
    face_match: float = 0.95
    extra_accounts: list[str] = field(default_factory=list)

    @property
    def lat(self) -> float:
        return self.home.lat

    @property
    def lon(self) -> float:
        return self.home.lon


def weighted(rng: random.Random, pairs: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def jitter(rng: random.Random, lat: float, lon: float, scale: float) -> tuple[float, float]:
    return round(lat + rng.gauss(0, scale), 4), round(lon + rng.gauss(0, scale), 4)


def city_ip(rng: random.Random, city: int) -> str:
    prefix = rng.choice(CITIES[city][3])
    return f"{prefix}.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"


def mobile_ip(rng: random.Random) -> str:
    return f"{rng.choice(MOBILE_PREFIXES)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"


def datacenter_ip(rng: random.Random) -> str:
    return f"{rng.choice(DATACENTER_PREFIXES)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"


def pick_city(rng: random.Random) -> int:
    return rng.choices(range(len(CITIES)), weights=CITY_WEIGHTS)[0]


def new_device(
    rng: random.Random,
    ids: Ids,
    start_ms: int,
    days: int,
    *,
    emulator: bool = False,
    rooted: bool | None = None,
    loan_apps: int | None = None,
    sim_hash: str | None = None,
) -> Device:
    """A phone (or emulator). Most honest phones carry 1-5 lending apps."""
    if emulator or rng.random() < 0.78:
        os_name, version = "android", weighted(rng, ANDROID_VERSIONS)
    else:
        os_name, version = "ios", weighted(rng, IOS_VERSIONS)
    if rooted is None:
        rooted = os_name == "android" and rng.random() < 0.02
    if loan_apps is None:
        loan_apps = rng.choices((0, 1, 2, 3, 4, 5, 6, 7, 8), (3, 30, 25, 17, 10, 6, 4, 3, 2))[0]
    upgrade_at = None
    if rng.random() < 0.7:
        # the new app version reaches most phones over the weeks after day 10
        upgrade_at = start_ms + int((10 + rng.expovariate(1 / 6)) * DAY)
        if upgrade_at > start_ms + days * DAY:
            upgrade_at = None
    return Device(
        device_id=ids.new("d", 20),
        os=os_name,
        os_version=version,
        is_emulator=emulator,
        is_rooted=rooted,
        sim_hash=sim_hash or ids.secret("sim"),
        loan_apps=loan_apps,
        app_version=rng.choice(APP_VERSIONS_OLD) if rng.random() < 0.25 else APP_VERSION_CURRENT,
        upgrade_at=upgrade_at,
    )


def new_person(
    rng: random.Random,
    ids: Ids,
    start_ms: int,
    days: int,
    *,
    city: int | None = None,
    age: tuple[int, int] | None = None,
    income: tuple[float, float] | None = None,
    device: Device | None = None,
    home: Net | None = None,
) -> Person:
    """A borrower with a home network, a phone and a bank card."""
    city = pick_city(rng) if city is None else city
    _, clat, clon, _ = CITIES[city]
    if home is None:
        lat, lon = jitter(rng, clat, clon, 0.06)
        home = Net(city_ip(rng, city), ids.secret("wifi"), lat, lon)
    years = int(min(60, max(20, rng.gauss(31, 7)))) if age is None else rng.randint(*age)
    if income is None:
        monthly = min(60000.0, max(2000.0, 6500 * math.exp(rng.gauss(0, 0.5))))
    else:
        monthly = rng.uniform(*income)
    bureau = None if rng.random() < 0.3 else round(min(850, max(350, rng.gauss(640, 70))))
    return Person(
        user_id=ids.new("u", 12),
        phone_hash=ids.secret("phone"),
        id_hash=ids.secret("id"),
        card_hash=ids.secret("card"),
        age=years,
        income=round(monthly, -2),
        city=city,
        home=home,
        contacts=int(min(1500, max(20, 250 * math.exp(rng.gauss(0, 0.6))))),
        bureau=bureau,
        channel=weighted(rng, CHANNELS),
        activity=rng.uniform(0.35, 0.95),
        device=device or new_device(rng, ids, start_ms, days),
        face_match=round(rng.uniform(0.88, 0.995), 3),
    )


def mobile_net(rng: random.Random, person: Person) -> Net:
    lat, lon = jitter(rng, person.home.lat, person.home.lon, 0.03)
    return Net(mobile_ip(rng), None, lat, lon)


def session_net(rng: random.Random, person: Person) -> Net:
    """Home Wi-Fi most of the time, otherwise mobile data somewhere around town."""
    if rng.random() < 0.6:
        lat, lon = jitter(rng, person.home.lat, person.home.lon, 0.002)
        return Net(person.home.ip, person.home.wifi_hash, lat, lon)
    return mobile_net(rng, person)
