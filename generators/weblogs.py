"""Web access logs (Combined Log Format) from a seeded, Faker-built site and its visitors.

The site has a page catalogue (home, sections, products, articles, search, an API, static
assets) whose popularity follows a Zipf law, so a few pages take most hits and many are
rare. Visitors keep their IP address (IPv4 or IPv6) and browser for the whole run; a visit
walks from page to page with the previous page as referrer, and starts from a search
engine, another site or nothing. About one visitor in twelve is a bot (crawlers, uptime
checks, scripts, and scanners probing for ``/wp-login.php`` and ``/.env``). Statuses mix
200 with 304 for cached assets, 301 redirects, 401/403 on admin pages, 404 for scanners
and dead links, and a few 5xx.

Values are drawn in NumPy blocks and lines assembled from precomputed pieces: well over
50,000 lines/s on one core. Malformed, duplicate and late lines are injected as for the
metrics (``generators/faults.py``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar

import numpy as np
from faker import Faker

from generators.faults import StreamConfig, with_faults
from generators.metrics import GeneratorStats

#: Real user-agent strings, with how often each kind of client shows up.
BROWSERS = (
    (0.30, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.0.0 Safari/537.36"),
    (0.10, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
           "Gecko) Chrome/131.0.0.0 Safari/537.36"),
    (0.08, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    (0.07, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
           "Gecko) Version/18.1 Safari/605.1.15"),
    (0.06, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"),
    (0.02, "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    (0.18, "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
           "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"),
    (0.15, "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.6778.81 Mobile Safari/537.36"),
    (0.04, "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
           "Gecko) Version/18.1 Mobile/15E148 Safari/604.1"),
)
BOTS = (
    (0.35, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    (0.15, "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
    (0.10, "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"),
    (0.10, "curl/8.5.0"),
    (0.10, "python-requests/2.32.3"),
    (0.10, "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"),
    (0.10, "Mozilla/5.0 (compatible; scanner)"),  # the probing kind
)
SCANNER_PATHS = ("/wp-login.php", "/.env", "/xmlrpc.php", "/phpmyadmin/", "/.git/config",
                 "/admin/config.php", "/cgi-bin/luci")
SEARCH_ENGINES = ("https://www.google.com/", "https://www.bing.com/",
                  "https://duckduckgo.com/", "https://search.yahoo.com/")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(kw_only=True)
class WebLogConfig(StreamConfig):
    visitors: int = 2000
    rate_per_s: float = 50.0  # requests per second of event time, on average
    pages: int = 2000
    ipv6_share: float = 0.2
    bot_share: float = 0.08

    fractions: ClassVar[tuple[str, ...]] = ("ipv6_share", "bot_share")

    def __post_init__(self):
        if self.visitors < 1:
            raise ValueError("visitors must be at least 1")
        if self.rate_per_s <= 0:
            raise ValueError("rate must be positive")
        super().__post_init__()

    @property
    def total_events(self) -> int | None:
        if self.count is not None:
            return self.count
        if self.duration_s is None:
            return None
        return int(round(self.duration_s * self.rate_per_s))


@dataclass
class Page:
    path: str
    method: str
    size: int
    status: tuple  # (cumulative probability, status) pairs
    asset: bool = False


@dataclass
class Visitor:
    prefix: str  # 'ip - user ['
    agent: str
    bot: bool
    scanner: bool
    last_page: int = -1
    last_ms: int = -(10 ** 15)
    entry: str = "-"
    pages: list = field(default_factory=list)


def _pick(weighted, u: float) -> str:
    total = 0.0
    for weight, value in weighted:
        total += weight
        if u < total:
            return value
    return weighted[-1][1]


def _statuses(*pairs) -> tuple:
    acc, out = 0.0, []
    for p, status in pairs:
        acc += p
        out.append((acc, status))
    return tuple(out)


def build_site(fake: Faker, pages: int, rng: np.random.Generator) -> list[Page]:
    ok = _statuses((0.993, "200"), (0.003, "500"), (0.002, "502"), (0.002, "503"))
    cached = _statuses((0.80, "200"), (0.196, "304"), (0.004, "404"))
    site = [Page("/", "GET", 24_000, ok)]
    kinds = (("products", 0.35), ("blog", 0.25), ("docs", 0.2), ("category", 0.2))
    for section, share in kinds:
        for _ in range(max(1, int(pages * 0.6 * share))):
            size = int(rng.lognormal(10.2, 0.5))
            site.append(Page(f"/{section}/{fake.unique.slug()}", "GET", size, ok))
    for _ in range(max(1, int(pages * 0.25))):
        ext = ("css", "js", "png", "jpg", "svg", "woff2")[int(rng.integers(6))]
        size = int(rng.lognormal(9.5, 1.2))
        site.append(Page(f"/static/{fake.unique.slug()}.{ext}", "GET", size, cached,
                         asset=True))
    for word in fake.words(nb=max(1, int(pages * 0.1)), unique=True):
        site.append(Page(f"/search?q={word}", "GET", int(rng.lognormal(9.8, 0.3)), ok))
    site += [
        Page("/api/v1/cart", "POST", 310, _statuses((0.95, "201"), (0.04, "400"),
                                                   (0.01, "500"))),
        Page("/api/v1/session", "POST", 120, _statuses((0.9, "200"), (0.1, "401"))),
        Page("/login", "POST", 0, _statuses((0.85, "302"), (0.15, "401"))),
        Page("/admin/", "GET", 512, _statuses((0.3, "301"), (0.4, "401"), (0.3, "403"))),
        Page("/docs", "GET", 0, _statuses((1.0, "301"),)),  # the canonical URL has a slash
        Page("/old-pricing", "GET", 180, _statuses((1.0, "404"),)),  # a dead link
    ]
    return site


def _fake_ipv6(rng: np.random.Generator) -> str:
    # Global unicast (2000::/3) in blocks that real registries hand out.
    head = ("2001:4860", "2a00:1450", "2a03:2880", "2600:1f18", "2c0f:fb50", "2405:200")
    groups = [head[int(rng.integers(len(head)))]] + [f"{int(x):x}" for x in
                                                      rng.integers(0, 65536, 4)]
    return ":".join(groups) + "::" + f"{int(rng.integers(1, 65536)):x}"


class WebLogGenerator:
    """Iterate :meth:`render` for log lines or :meth:`render_timed` for a paced publisher."""

    malformed_kinds = ("truncated", "garbage", "bad_time", "bad_client")

    def __init__(self, config: WebLogConfig):
        self.config = config
        self.stats = GeneratorStats()
        self._rng = np.random.default_rng(config.seed)
        fake = Faker()
        fake.seed_instance(config.seed)
        self.site = build_site(fake, config.pages, self._rng)
        self._scanner_pages = [Page(p, "GET", 180, _statuses((1.0, "404"),))
                               for p in SCANNER_PATHS]
        # Popularity ranks: the home page first, the rest in a seeded random order.
        self.site[1:] = [self.site[i] for i in self._rng.permutation(len(self.site) - 1) + 1]
        ranks = np.arange(1, len(self.site) + 1)
        weights = 1.0 / ranks ** 1.1
        self._page_cdf = np.cumsum(weights / weights.sum())
        self.visitors = []
        self._referrers = [f"https://{fake.domain_name()}/" for _ in range(30)]
        for _ in range(config.visitors):
            bot = bool(self._rng.random() < config.bot_share)
            agent = _pick(BOTS if bot else BROWSERS, float(self._rng.random()))
            ip = (_fake_ipv6(self._rng) if self._rng.random() < config.ipv6_share
                  else fake.ipv4_public())
            user = fake.user_name() if not bot and self._rng.random() < 0.03 else "-"
            self.visitors.append(Visitor(f"{ip} - {user} [", agent, bot,
                                         scanner=agent.endswith("scanner)")))
        # Visitors come back at different rates: a few are very active.
        activity = self._rng.pareto(1.5, config.visitors) + 1
        self._visitor_cdf = np.cumsum(activity / activity.sum())
        self._second_cache: tuple[int, str] = (-1, "")

    # ---- event time ------------------------------------------------------------------------
    def _times(self):
        cfg = self.config
        start_ms = cfg.start.timestamp() * 1000
        total = cfg.total_events
        end_ms = None if cfg.duration_s is None or cfg.count is not None else \
            start_ms + cfg.duration_s * 1000
        now = start_ms
        emitted = 0
        while True:
            gaps = self._rng.exponential(1000.0 / cfg.rate_per_s, 8192)
            for t in (now + np.cumsum(gaps)).tolist():
                if (total is not None and emitted >= total) or (end_ms is not None
                                                                and t >= end_ms):
                    return
                emitted += 1
                yield int(t)
            now = t

    def _stamp(self, epoch_ms: int) -> str:
        second = epoch_ms // 1000
        if self._second_cache[0] != second:
            t = time.gmtime(second)
            self._second_cache = (second, f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/"
                                          f"{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:"
                                          f"{t.tm_sec:02d} +0000")
        return self._second_cache[1]

    def events(self):
        """``(epoch_ms, fields)`` in time order, ``fields`` being the parts of one line."""
        rng = self._rng
        site, visitors = self.site, self.visitors
        block = 8192
        draws = iter(())
        for epoch_ms in self._times():
            try:
                v_u, p_u, s_u, b_u, r_u = next(draws)
            except StopIteration:
                r = rng.random((5, block))
                r[0] = np.searchsorted(self._visitor_cdf, r[0])
                r[1] = np.searchsorted(self._page_cdf, r[1])
                r[3] = rng.lognormal(0.0, 0.15, block)
                draws = iter(zip(*(row.tolist() for row in r), strict=True))
                v_u, p_u, s_u, b_u, r_u = next(draws)
            visitor = visitors[min(int(v_u), len(visitors) - 1)]
            if visitor.scanner:
                page_index = -1
                page = self._scanner_pages[int(r_u * len(self._scanner_pages))]
            else:
                page_index = min(int(p_u), len(site) - 1)
                page = site[page_index]
            in_visit = epoch_ms - visitor.last_ms < 30 * 60 * 1000 and visitor.last_page >= 0
            if in_visit and not visitor.bot:
                referrer = "https://www.example-shop.com" + site[visitor.last_page].path
            elif visitor.bot:
                referrer = "-"
            else:  # a new visit: from a search engine, another site, or typed in
                referrer = (SEARCH_ENGINES[int(r_u * 4)] if r_u < 0.5 else
                            self._referrers[int(r_u * 60) % 30] if r_u < 0.7 else "-")
            visitor.last_ms, visitor.last_page = epoch_ms, page_index
            status = "200"
            for threshold, code in page.status:
                if s_u < threshold:
                    status = code
                    break
            method = "HEAD" if visitor.bot and r_u > 0.97 else page.method
            size = "-" if status == "304" or method == "HEAD" else str(int(page.size * b_u))
            yield epoch_ms, (visitor, epoch_ms, method, page.path, status, size, referrer)

    # ---- rendering ---------------------------------------------------------------------------
    def _line(self, fields) -> str:
        visitor, epoch_ms, method, path, status, size, referrer = fields
        return (f'{visitor.prefix}{self._stamp(epoch_ms)}] "{method} {path} HTTP/1.1" '
                f'{status} {size} "{referrer}" "{visitor.agent}"')

    def _malformed(self, kind: str, fields) -> str:
        line = self._line(fields)
        if kind == "truncated":  # cut inside the request: a cut after it may still parse
            return line[: line.index('"') + 6]
        if kind == "garbage":
            return "\x00\x17 GET / ???" + line[-12:]
        if kind == "bad_time":
            iso = datetime.fromtimestamp(fields[1] / 1000, timezone.utc).isoformat()
            head, _, rest = line.partition("[")
            return head + "[" + iso + rest.partition("]")[1] + rest.partition("]")[2]
        # No client at all: what some proxies log when they have none.
        return "- " + line.split(" ", 1)[1]

    def render_timed(self):
        """``(emitted_at_ms, event_ms, line)``, as :meth:`MetricsGenerator.render_timed`."""
        return with_faults(self.events(), self._line, self._malformed, self.malformed_kinds,
                           self.config, self.stats, redelivery_ms=5000)

    def render(self):
        for _, _, line in self.render_timed():
            yield line
