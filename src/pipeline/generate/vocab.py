"""Static vocabularies the generator draws from (names, countries, currencies, pages, products).

Kept apart from the generation logic so that making the data look different never touches the
entity model. The tables are tuples so their order, and therefore the seeded output, is fixed.
"""

from __future__ import annotations

import numpy as np

# Compact word tables read better than one entry per line.
# fmt: off

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Sandra", "Mark", "Ashley", "Steven", "Emily", "Paul",
    "Michelle", "Andrew", "Amanda", "Joshua", "Melissa", "Lukas", "Sofia", "Mateo", "Emma", "Noah",
    "Olivia", "Liam", "Mia", "Hugo", "Chloe", "Yuki", "Hana", "Arjun", "Priya", "Wei", "Mei", "Lars",
    "Ingrid", "Pierre", "Camille", "Giulia", "Marco", "Sean", "Aoife",
)

LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King",
    "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell", "Mitchell", "Roberts",
    "Carter", "Phillips", "Evans", "Turner", "Parker", "Collins", "Edwards", "Stewart", "Morris", "Murphy",
    "Mueller", "Schmidt", "Schneider", "Fischer", "Dubois", "Moreau", "Rossi", "Bianchi", "Tanaka", "Sato",
    "Suzuki", "Patel", "Sharma", "Kumar", "Chen", "Wang", "Li", "Zhang", "Nilsson", "Larsen", "O'Brien",
    "O'Connor", "Novak", "Kowalski", "Silva", "Santos", "Costa", "Jansen", "de Vries", "Bakker",
)

NAME_ADJECTIVES = (
    "Blue", "Northern", "Silver", "Bright", "Summit", "Evergreen", "Granite", "Pacific", "Atlantic",
    "Golden", "Red", "Iron", "Crystal", "Prime", "United", "First", "Global", "Pioneer", "Harbor", "Cedar",
)

NAME_NOUNS = (
    "Harbor", "Ridge", "River", "Peak", "Bridge", "Field", "Stone", "Forge", "Valley", "Point", "Labs",
    "Systems", "Works", "Networks", "Dynamics", "Logic", "Wave", "Signal", "Grid", "Cloud",
)

COMPANY_SUFFIXES = (
    "Analytics", "Logistics", "Software", "Holdings", "Group", "Technologies", "Partners", "Solutions",
    "Industries", "Consulting", "Health", "Foods", "Capital", "Energy", "Retail", "Media", "Labs",
    "Systems",
)

INDUSTRIES = (
    "Software", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Education", "Media",
    "Logistics", "Energy", "Telecommunications", "Public Sector", "Hospitality",
)

SEGMENTS = ("Enterprise", "Mid-Market", "SMB")

SEGMENT_WEIGHTS = (0.15, 0.35, 0.50)

# Bigger customers have more contacts, opportunities and activity.
SEGMENT_ACTIVITY = (6.0, 2.5, 1.0)

# Median annual revenue per segment, in USD.
SEGMENT_REVENUE = (800e6, 60e6, 6e6)

# Median opportunity size per segment, in USD.
SEGMENT_DEAL = (150e3, 45e3, 12e3)

# (ISO-2, full name, calling code, top-level domain, weight, home currency)
COUNTRIES = (
    ("US", "United States", "1", "com", 40, "USD"), ("GB", "United Kingdom", "44", "co.uk", 10, "GBP"),
    ("DE", "Germany", "49", "de", 8, "EUR"), ("FR", "France", "33", "fr", 6, "EUR"),
    ("CA", "Canada", "1", "ca", 5, "CAD"), ("AU", "Australia", "61", "com.au", 4, "AUD"),
    ("NL", "Netherlands", "31", "nl", 3, "EUR"), ("JP", "Japan", "81", "jp", 3, "JPY"),
    ("IN", "India", "91", "in", 3, "INR"), ("BR", "Brazil", "55", "com.br", 3, "BRL"),
    ("SE", "Sweden", "46", "se", 2, "SEK"), ("ES", "Spain", "34", "es", 2, "EUR"),
    ("IT", "Italy", "39", "it", 2, "EUR"), ("SG", "Singapore", "65", "sg", 2, "SGD"),
    ("IE", "Ireland", "353", "ie", 2, "EUR"), ("CH", "Switzerland", "41", "ch", 2, "CHF"),
    ("MX", "Mexico", "52", "com.mx", 2, "MXN"), ("PL", "Poland", "48", "pl", 1, "PLN"),
)

# Non-USD currencies the FX vendor quotes, with a realistic starting rate (units per 1 USD) and
# a daily log-volatility; pegged currencies barely move.
FX_CURRENCIES = (
    ("AED", 3.6725, 0.0001), ("AUD", 1.52, 0.006), ("BRL", 5.45, 0.009), ("CAD", 1.37, 0.004),
    ("CHF", 0.80, 0.005), ("CLP", 935.0, 0.008), ("CNY", 7.13, 0.002), ("COP", 4010.0, 0.009),
    ("CZK", 20.9, 0.005), ("DKK", 6.36, 0.004), ("EUR", 0.853, 0.004), ("GBP", 0.741, 0.005),
    ("HKD", 7.80, 0.0003), ("HUF", 338.0, 0.006), ("IDR", 16250.0, 0.004), ("ILS", 3.36, 0.006),
    ("INR", 87.6, 0.003), ("JPY", 147.5, 0.006), ("KRW", 1385.0, 0.005), ("MXN", 18.6, 0.007),
    ("MYR", 4.21, 0.004), ("NOK", 10.05, 0.006), ("NZD", 1.69, 0.006), ("PHP", 57.1, 0.004),
    ("PLN", 3.64, 0.005), ("SAR", 3.75, 0.0001), ("SEK", 9.48, 0.006), ("SGD", 1.28, 0.003),
    ("THB", 32.4, 0.005), ("TRY", 41.2, 0.004), ("TWD", 29.9, 0.004), ("ZAR", 17.6, 0.008),
)

# Currency mix of orders and opportunities: mostly USD/EUR/GBP, a tail of others (all quoted by FX).
TRADE_CURRENCIES = (
    ("USD", 0.56), ("EUR", 0.20), ("GBP", 0.10), ("CAD", 0.03), ("AUD", 0.025), ("JPY", 0.02),
    ("CHF", 0.015), ("SEK", 0.01), ("SGD", 0.01), ("INR", 0.01), ("BRL", 0.01), ("MXN", 0.01),
)

SALES_REPS = tuple(
    f"{first.lower()}.{last.lower().replace(' ', '').replace(chr(39), '')}@northwind-saas.com"
    for first, last in zip(FIRST_NAMES[:40], LAST_NAMES[40:80], strict=True)
)

TITLES = (
    "CEO", "CFO", "CTO", "VP Engineering", "VP Sales", "Head of Data", "Data Engineer", "Analyst",
    "Product Manager", "Procurement Manager", "IT Director", "Operations Manager", "Marketing Lead",
    "Software Engineer", "Account Executive", "Director of Finance", "Chief of Staff", "Consultant",
)

OPPORTUNITY_KINDS = ("New Business", "Expansion", "Renewal", "Upsell", "Pilot")

PRODUCT_LINES = ("Analytics Suite", "Data Platform", "Premium Support", "API Access", "Seats", "Training")

OPPORTUNITY_NOTES = (
    "Customer asked for multi-year pricing", "Legal review pending, see email thread",
    "Champion left; re-engage new sponsor", 'Budget approved for Q4, "pending" PO',
    "Competitor in the deal, discount requested",
)

# (stage, probability %) in pipeline order; the last two are terminal.
STAGES = (
    ("Prospecting", 10), ("Qualification", 20), ("Proposal", 50), ("Negotiation", 75),
    ("Closed Won", 100), ("Closed Lost", 0),
)

ORDER_STATUSES = ("pending", "placed", "shipped", "cancelled", "returned")

ORDER_CHANNELS = ("web", "sales", "partner", "marketplace")

BEHAVIOR_EVENT_TYPES = ("page_view", "click", "search", "add_to_cart", "signup", "download")

BEHAVIOR_EVENT_WEIGHTS = (0.55, 0.24, 0.11, 0.06, 0.01, 0.03)

PAGE_PATHS = (
    "/", "/pricing", "/product", "/product/analytics", "/product/platform", "/docs",
    "/docs/getting-started", "/docs/api", "/blog", "/blog/2026/lakehouse-patterns", "/customers",
    "/contact", "/signup", "/login", "/app/dashboard", "/app/reports", "/app/settings", "/app/billing",
    "/search", "/downloads",
)

SITE = "https://www.northwind-saas.com"

REFERRERS = (
    "https://www.google.com/", "https://www.bing.com/", "https://www.linkedin.com/",
    "https://news.ycombinator.com/", "", "https://duckduckgo.com/",
)

PRODUCT_EVENT_TYPES = (
    "feature_used", "item_viewed", "item_added", "checkout_started", "subscription_changed",
)

PRODUCT_EVENT_WEIGHTS = (0.45, 0.30, 0.13, 0.08, 0.04)

FEATURES = ("dashboard", "report_builder", "alerts", "export_csv", "sql_editor", "sharing", "api_keys")

PLANS = ("free", "starter", "pro", "enterprise")

VIEW_SOURCES = ("search", "recommendation", "direct", "email")

PAYMENT_METHODS = ("card", "invoice", "paypal")

N_PRODUCTS = 240

CRM_DRIFT_COLUMNS = {
    "accounts": ("region", ("NA", "EMEA", "APAC", "LATAM")),
    "contacts": (
        "linkedin_url",
        ("https://www.linkedin.com/in/jsmith", "https://www.linkedin.com/in/maria-garcia-7a1b2c", ""),
    ),
    "opportunities": ("forecast_category", ("Pipeline", "Best Case", "Commit", "Omitted")),
}
# fmt: on

# Derived lookups, shared by the entity and activity models.
TRADE_CODES = tuple(code for code, _ in TRADE_CURRENCIES)
TRADE_WEIGHTS = np.array([w for _, w in TRADE_CURRENCIES]) / sum(w for _, w in TRADE_CURRENCIES)
COUNTRY_WEIGHTS = np.array([c[4] for c in COUNTRIES], dtype=float) / sum(c[4] for c in COUNTRIES)
# Units of each currency per USD at the start of any period, to price amounts in local currency.
START_RATE = {"USD": 1.0} | {code: rate for code, rate, _ in FX_CURRENCIES}
