"""Generate the sample shop shipped in ecomlm/data/ (deterministic: rerunning
reproduces every file byte for byte).

    python tools/make_sample_shop.py            # writes ecomlm/data/
    python tools/make_sample_shop.py --check    # regenerates into a temp dir and compares

Brightcart is a fictional shop. Its facts live in tools/shop_kb.py; this script
turns them into a knowledge base (JSONL, CSV and Markdown), support dialogues in
OpenAI's fine-tuning chat format, a held-out question set, and builds a catalog,
interaction events drawn from latent user preferences, and labelled reviews.
Only the standard library is used, so the output does not depend on NumPy's RNG.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import filecmp
import io
import json
import math
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shop_kb import ENTRIES, FOLLOW_UPS, MORE_HELDOUT, OUT_OF_SCOPE, SHOP  # noqa: E402

SEED = 20260107
OUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ecomlm", "data")

# ------------------------------------------------------------------ catalog

COLORS = ["black", "white", "navy", "charcoal", "olive", "forest green", "red", "burgundy", "sand", "sky blue",
          "grey", "orange", "teal", "mustard", "rose", "brown", "cream", "slate blue"]
MODEL_WORDS = ["Aero", "Summit", "Drift", "Nova", "Terra", "Pulse", "Ridge", "Cove", "Halo", "Ember", "Fjord",
               "Vale", "Strata", "Breeze", "Orbit", "Canyon", "Alder", "Mesa", "Lumen", "Quill", "Harbor", "Sprint",
               "Tundra", "Cascade", "Flint", "Juniper", "Meridian", "Sierra", "Willow", "Zephyr", "Basalt", "Koa"]

# category -> brands as (name, tier); tier 0 budget, 1 mid, 2 premium
BRANDS = {
    "shoes": [("Strideline", 1), ("Pacefield", 0), ("Korvath", 2), ("Mossbank", 1), ("Ascenta", 2)],
    "apparel": [("Loomwell", 1), ("Northfold", 2), ("Basics Co.", 0), ("Fernway", 1), ("Atelier Roux", 2)],
    "outdoor": [("Trailhead", 1), ("Alpenkin", 2), ("Campwise", 0), ("Ridgeback", 1)],
    "electronics": [("Voltari", 1), ("Sonique", 2), ("Bitwave", 0), ("Lumetra", 1)],
    "home": [("Hearthly", 1), ("Nook & Co.", 0), ("Maison Vell", 2), ("Oakhaven", 1)],
    "beauty": [("Dewlab", 1), ("Purely", 0), ("Séraphine", 2), ("Botanica Lane", 1)],
    "kitchen": [("Cuisora", 1), ("Ironleaf", 2), ("Panly", 0)],
    "sports": [("Flexcore", 1), ("Reptide", 0), ("Zenora", 2)],
}
TIER_MULT = {0: 0.7, 1: 1.0, 2: 1.5}

# category -> products as (noun, base price, base weight g, sizes kind, materials, features)
SHOE_SIZES = "7;7.5;8;8.5;9;9.5;10;10.5;11;12"
APPAREL_SIZES = "XS;S;M;L;XL;XXL"
NOUNS = {
    "shoes": [
        ("Running Shoe", 110, 560, SHOE_SIZES, ["engineered mesh", "knit", "recycled polyester"],
         ["cushioned foam midsole", "breathable upper", "reflective heel tab", "8 mm heel-to-toe drop", "rubber outsole", "removable insole"]),
        ("Trail Runner", 130, 640, SHOE_SIZES, ["mesh", "ripstop nylon"],
         ["lugged outsole for grip", "rock plate", "water-resistant upper", "gusseted tongue", "toe bumper"]),
        ("Hiking Boot", 165, 1150, SHOE_SIZES, ["full-grain leather", "suede", "nubuck"],
         ["waterproof membrane", "ankle support", "Vibram-style outsole", "padded collar", "speed lacing"]),
        ("Sneaker", 85, 720, SHOE_SIZES, ["canvas", "leather", "suede"],
         ["vulcanized rubber sole", "cushioned footbed", "organic cotton laces", "classic low-top profile"]),
        ("Sandal", 60, 420, SHOE_SIZES, ["recycled rubber", "leather", "cork"],
         ["contoured cork footbed", "adjustable straps", "quick-dry lining", "non-slip sole"]),
        ("Loafer", 120, 690, SHOE_SIZES, ["suede", "full-grain leather"],
         ["leather lining", "flexible sole", "slip-on design", "padded heel"]),
    ],
    "apparel": [
        ("Crew T-Shirt", 28, 180, APPAREL_SIZES, ["organic cotton", "cotton jersey", "linen blend"],
         ["relaxed fit", "pre-shrunk", "ribbed collar", "tagless label", "garment dyed"]),
        ("Hoodie", 68, 620, APPAREL_SIZES, ["brushed fleece", "organic cotton", "French terry"],
         ["kangaroo pocket", "lined hood", "ribbed cuffs", "relaxed fit", "brushed interior"]),
        ("Rain Jacket", 140, 380, APPAREL_SIZES, ["recycled nylon", "2.5-layer polyester"],
         ["taped seams", "adjustable hood", "packs into its pocket", "10,000 mm waterproof rating", "pit zips"]),
        ("Chinos", 75, 540, "28;30;32;34;36;38", ["stretch cotton twill", "organic cotton"],
         ["slim fit", "2% elastane for stretch", "coin pocket", "tapered leg"]),
        ("Merino Sweater", 110, 420, APPAREL_SIZES, ["merino wool", "merino-cashmere blend"],
         ["temperature regulating", "odour resistant", "crew neck", "fine 16-micron yarn"]),
        ("Leggings", 55, 230, APPAREL_SIZES, ["nylon-spandex", "recycled polyester"],
         ["high waist", "side pocket", "squat-proof fabric", "four-way stretch"]),
        ("Fleece Jacket", 90, 480, APPAREL_SIZES, ["recycled polyester fleece"],
         ["full zip", "zippered hand pockets", "stand-up collar", "anti-pill finish"]),
    ],
    "outdoor": [
        ("2-Person Tent", 240, 2100, "one size", ["ripstop polyester", "silnylon"],
         ["freestanding design", "two doors", "3000 mm waterproof fly", "color-coded poles", "sets up in 5 minutes"]),
        ("Sleeping Bag", 150, 1300, "regular;long", ["ripstop nylon", "synthetic insulation", "duck down"],
         ["comfort rating 0°C", "mummy shape", "draft collar", "compression sack included"]),
        ("30L Backpack", 110, 950, "S/M;M/L", ["recycled nylon", "Cordura"],
         ["ventilated back panel", "hip belt pockets", "hydration sleeve", "rain cover included"]),
        ("Trekking Poles", 80, 480, "one size", ["aluminium", "carbon fibre"],
         ["cork grips", "flick-lock adjustment", "collapsible to 62 cm", "tungsten tips"]),
        ("Headlamp", 40, 90, "one size", ["ABS plastic"],
         ["350 lumens", "rechargeable via USB-C", "red light mode", "IPX4 water resistance"]),
        ("Insulated Bottle", 32, 380, "500 ml;750 ml;1 L", ["stainless steel"],
         ["keeps drinks cold 24 hours", "double-wall vacuum", "leakproof lid", "BPA-free"]),
        ("Camping Stove", 70, 330, "one size", ["stainless steel", "aluminium"],
         ["piezo ignition", "boils 1 L in 4 minutes", "folding pot supports", "wind shield"]),
    ],
    "electronics": [
        ("Wireless Earbuds", 120, 55, "one size", ["plastic", "aluminium"],
         ["active noise cancelling", "28-hour battery with case", "IPX5 sweat resistance", "Bluetooth 5.3", "wireless charging case"]),
        ("Bluetooth Speaker", 90, 540, "one size", ["fabric and rubber", "aluminium"],
         ["360° sound", "16-hour battery", "IP67 waterproof", "pairs two speakers", "USB-C charging"]),
        ("Smartwatch", 220, 48, "40 mm;44 mm", ["aluminium", "stainless steel"],
         ["heart-rate and SpO2 sensors", "built-in GPS", "7-day battery", "5 ATM water resistance", "always-on display"]),
        ("Power Bank", 45, 210, "10,000 mAh;20,000 mAh", ["aluminium", "plastic"],
         ["20 W fast charging", "two USB-C ports", "LED charge indicator", "charges a phone twice"]),
        ("Over-Ear Headphones", 180, 260, "one size", ["protein leather", "aluminium"],
         ["active noise cancelling", "30-hour battery", "foldable design", "multipoint Bluetooth", "3.5 mm cable included"]),
        ("USB-C Charger", 35, 110, "45 W;65 W", ["plastic"],
         ["GaN technology", "two USB-C ports and one USB-A", "foldable plug", "charges a laptop"]),
        ("E-Reader", 140, 190, "8 GB;16 GB", ["plastic"],
         ["6.8-inch glare-free screen", "adjustable warm light", "10-week battery", "waterproof IPX8"]),
    ],
    "home": [
        ("Desk Lamp", 65, 1100, "one size", ["aluminium", "brass"],
         ["dimmable LED", "adjustable arm", "USB charging port", "warm to cool light"]),
        ("Throw Blanket", 70, 900, "130 x 170 cm", ["wool blend", "organic cotton", "chunky knit acrylic"],
         ["fringed edges", "machine washable", "oversized", "herringbone weave"]),
        ("Mug Set", 38, 1400, "set of 4", ["stoneware", "porcelain"],
         ["dishwasher safe", "microwave safe", "350 ml each", "reactive glaze"]),
        ("Scented Candle", 30, 420, "220 g", ["soy wax", "coconut wax"],
         ["50-hour burn time", "cotton wick", "hand-poured", "notes of cedar and fig"]),
        ("Bedding Set", 130, 2200, "Full;Queen;King", ["percale cotton", "linen", "sateen cotton"],
         ["duvet cover and two pillowcases", "OEKO-TEX certified", "button closure", "300 thread count"]),
        ("Storage Baskets", 45, 800, "set of 3", ["seagrass", "cotton rope"],
         ["handles on both sides", "foldable", "nesting sizes"]),
        ("Wall Clock", 55, 700, "30 cm", ["oak", "metal"],
         ["silent sweep movement", "minimalist dial", "runs on one AA battery"]),
    ],
    "beauty": [
        ("Daily Moisturizer", 32, 80, "50 ml", ["cream"],
         ["hyaluronic acid", "fragrance-free", "non-comedogenic", "suitable for sensitive skin"]),
        ("Mineral Sunscreen SPF 50", 26, 110, "75 ml", ["lotion"],
         ["broad spectrum SPF 50", "reef-friendly zinc oxide", "water resistant 80 minutes", "no white cast"]),
        ("Repair Shampoo", 22, 330, "300 ml", ["liquid"],
         ["sulfate-free", "argan oil", "color safe", "vegan formula"]),
        ("Vitamin C Serum", 45, 60, "30 ml", ["serum"],
         ["15% vitamin C", "brightening", "with vitamin E", "dropper bottle"]),
        ("Lip Balm Trio", 14, 30, "3 x 4.5 g", ["balm"],
         ["shea butter", "SPF 15", "three flavours", "beeswax-free"]),
        ("Body Lotion", 24, 420, "400 ml", ["lotion"],
         ["ceramides", "48-hour hydration", "lightly scented", "fast absorbing"]),
    ],
    "kitchen": [
        ("Chef's Knife", 95, 240, "20 cm", ["German stainless steel", "Damascus steel"],
         ["full tang", "58 HRC hardness", "ergonomic handle", "hand-sharpened edge"]),
        ("Cast Iron Skillet", 60, 2300, "26 cm;30 cm", ["cast iron"],
         ["pre-seasoned", "oven safe to 260°C", "induction compatible", "pour spouts"]),
        ("French Press", 40, 650, "1 L", ["borosilicate glass", "stainless steel"],
         ["double filter", "makes 8 cups", "heat-resistant handle"]),
        ("Blender", 120, 3800, "1.5 L", ["Tritan jar", "stainless steel"],
         ["1200 W motor", "6 speed settings", "pulse mode", "self-cleaning program"]),
        ("Cutting Board", 45, 1600, "45 x 30 cm", ["acacia wood", "bamboo"],
         ["juice groove", "reversible", "non-slip feet"]),
    ],
    "sports": [
        ("Yoga Mat", 60, 1800, "183 x 61 cm", ["natural rubber", "TPE", "cork"],
         ["6 mm cushioning", "non-slip surface", "alignment lines", "carrying strap"]),
        ("Adjustable Dumbbells", 180, 11000, "2-12 kg;2-24 kg", ["steel", "cast iron"],
         ["dial weight selector", "compact storage tray", "knurled handle"]),
        ("Resistance Bands", 25, 300, "set of 5", ["natural latex", "fabric"],
         ["five resistance levels", "door anchor", "carry bag", "exercise guide"]),
        ("Cycling Gloves", 30, 90, "S;M;L;XL", ["synthetic leather", "mesh"],
         ["gel padding", "touchscreen fingertips", "pull-off tabs"]),
        ("Jump Rope", 20, 200, "one size", ["steel cable", "PVC"],
         ["ball-bearing handles", "adjustable length", "foam grips"]),
    ],
}
CATEGORY_ZH = {"shoes": "鞋类", "apparel": "服装", "outdoor": "户外", "electronics": "电子产品", "home": "家居",
               "beauty": "美妆", "kitchen": "厨房", "sports": "运动"}
N_PRODUCTS = 260
START = dt.datetime(2026, 1, 1)
DAYS = 120
LATE_PRODUCTS = 12           # added in the last 20 days: no history before the split (cold start)


def price_tag(rng, x):
    """A realistic shelf price: 19.99, 24.50, 129.00, ..."""
    if x < 100:
        return round(math.floor(x) + rng.choice([0.99, 0.99, 0.5, 0.0, 0.95]), 2)
    return float(round(x / 5) * 5 - rng.choice([0, 0, 0.01, 1]))


def make_products(rng):
    products, used = [], set()
    cats = list(NOUNS)
    weights = {"shoes": 1.4, "apparel": 1.4, "outdoor": 1.0, "electronics": 1.0, "home": 1.0, "beauty": 0.8,
               "kitchen": 0.7, "sports": 0.7}
    while len(products) < N_PRODUCTS:
        cat = rng.choices(cats, weights=[weights[c] for c in cats])[0]
        noun, base, wt, sizes, materials, feats = rng.choice(NOUNS[cat])
        brand, tier = rng.choice(BRANDS[cat])
        word = rng.choice(MODEL_WORDS)
        name = f"{brand} {word} {noun}"
        if name in used:
            name = f"{brand} {word} {rng.choice(['II', 'Pro', 'Lite', 'Plus', 'GTX', 'Eco'])} {noun}"
            if name in used:
                continue
        used.add(name)
        price = price_tag(rng, base * TIER_MULT[tier] * rng.uniform(0.85, 1.18))
        k = min(len(feats), rng.choice([3, 3, 4]))
        products.append({
            "name": name, "brand": brand, "category": cat, "subcategory": noun.lower(),
            "color": rng.choice(COLORS), "material": rng.choice(materials), "sizes": sizes,
            "price": price, "currency": "USD", "weight_g": int(round(wt * rng.uniform(0.85, 1.15), -1) or wt),
            "features": "; ".join(rng.sample(feats, k)), "tier": tier,
        })
    rng.shuffle(products)
    late = set(rng.sample(range(N_PRODUCTS), LATE_PRODUCTS))
    for i, p in enumerate(products):
        p["product_id"] = f"P{1001 + i}"
        day = rng.randint(DAYS - 20, DAYS - 12) if i in late else rng.randint(-400, 30)
        p["added_on"] = (START + dt.timedelta(days=day)).strftime("%Y-%m-%d")
        p["category_zh"] = CATEGORY_ZH[p["category"]]
    return products


# ------------------------------------------------------------------- events

def make_events(rng, products, n_users=420):
    """Users with latent category, brand, price-tier and color tastes browse in
    sessions; each view may lead to a cart and a purchase. Good
    recommendations follow the tastes; popularity alone only knows q_i."""
    cats = list(NOUNS)
    quality = {p["product_id"]: rng.gauss(0, 0.6) for p in products}
    added = {p["product_id"]: dt.datetime.strptime(p["added_on"], "%Y-%m-%d") for p in products}
    by_cat = {c: [p for p in products if p["category"] == c] for c in cats}
    events = []
    users = []
    for u in range(n_users):
        uid = f"U{10001 + u}"
        # sparse category taste: 1-3 favourite categories
        favs = rng.sample(cats, rng.choice([1, 2, 2, 3]))
        cat_w = {c: (rng.uniform(2.0, 4.0) if c in favs else rng.uniform(0.0, 0.3)) for c in cats}
        fav_brands = {c: set(b for b, _ in rng.sample(BRANDS[c], rng.choice([1, 2]))) for c in cats}
        tier = rng.choices([0, 1, 2], weights=[0.3, 0.45, 0.25])[0]
        fav_colors = set(rng.sample(COLORS, 3))
        users.append(uid)
        n_sessions = max(1, int(rng.lognormvariate(1.6, 0.6)))
        first = rng.uniform(0, DAYS - 5)
        seen = {}
        for s in range(n_sessions):
            t = START + dt.timedelta(days=rng.uniform(first, DAYS), seconds=0)
            t = t.replace(microsecond=0)
            # a session stays mostly in one category drawn from the user's taste
            cat = rng.choices(cats, weights=[cat_w[c] ** 2 for c in cats])[0]
            for _ in range(rng.choice([1, 2, 2, 3, 3, 4, 5])):
                pool = by_cat[cat] if rng.random() < 0.8 else products
                scores = []
                for p in pool:
                    if added[p["product_id"]] > t:
                        scores.append(-1e9)
                        continue
                    x = (1.6 * (p["brand"] in fav_brands[p["category"]]) + 1.2 * (p["tier"] == tier)
                         - 0.6 * abs(p["tier"] - tier) + 0.5 * (p["color"] in fav_colors) + quality[p["product_id"]]
                         + 0.4 * cat_w[p["category"]] - 1.5 * seen.get(p["product_id"], 0))
                    scores.append(x)
                m = max(scores)
                w = [math.exp(x - m) for x in scores]
                p = rng.choices(pool, weights=w)[0]
                pid = p["product_id"]
                seen[pid] = seen.get(pid, 0) + 1
                t = t + dt.timedelta(seconds=rng.randint(20, 400))
                events.append((uid, pid, "view", t))
                like = scores[pool.index(p)] - m
                if rng.random() < 0.22 + 0.08 * (like > -1):
                    t = t + dt.timedelta(seconds=rng.randint(10, 300))
                    events.append((uid, pid, "cart", t))
                    if rng.random() < 0.5:
                        t = t + dt.timedelta(seconds=rng.randint(60, 900))
                        events.append((uid, pid, "purchase", t))
    events.sort(key=lambda e: (e[3], e[0], e[1]))
    return [{"user_id": u, "product_id": p, "event": e, "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S")}
            for u, p, e, t in events]


# ------------------------------------------------------------------ reviews

# aspect -> polarity -> clause templates; {thing} is the product noun
ASPECT_EN = {
    "size": {
        "positive": ["fits true to size", "the fit is spot on", "sizing was perfect for me", "I ordered my usual size and it fits great",
                     "the fit is just right", "the size chart was accurate", "fits like a glove", "snug in all the right places"],
        "negative": ["runs small", "way too small, I had to size up", "too tight around the toes", "runs a full size large",
                     "the fit is off, too loose", "sleeves are too short", "too narrow for my feet", "it's tiny compared to the size chart",
                     "too big even in my normal size"],
    },
    "quality": {
        "positive": ["the quality is excellent", "really well made", "stitching is solid", "feels premium", "sturdy and durable",
                     "the materials feel high-end", "still looks new after months of use", "great build quality", "very well built"],
        "negative": ["fell apart after two weeks", "the stitching came loose", "feels cheap", "the material pilled after one wash",
                     "broke on the second use", "the quality is poor", "the seams are already fraying", "flimsy and thin",
                     "stopped working after a month"],
    },
    "shipping": {
        "positive": ["fast shipping", "arrived two days early", "delivery was quick", "shipped the same day", "it arrived in perfect condition",
                     "super quick delivery", "arrived well packaged and on time", "came a day earlier than promised"],
        "negative": ["shipping took forever", "arrived a week late", "the box was crushed when it arrived", "delivery was slow",
                     "it took 12 days to arrive", "the parcel got lost for a week", "arrived damaged in transit", "tracking never updated"],
    },
    "price": {
        "positive": ["great value for the money", "worth every penny", "cheaper than anywhere else", "a bargain at this price",
                     "good price for what you get", "affordable and good", "excellent value"],
        "negative": ["overpriced for what it is", "way too expensive", "not worth the price", "you can find better for half the price",
                     "pricey for the quality", "too expensive for what you get"],
    },
}
GENERAL_EN = {
    "positive": ["Love it!", "Would buy again.", "Highly recommend.", "My new favourite.", "Exactly what I wanted.",
                 "Very happy with this purchase.", "Five stars from me.", "Bought a second one for my partner."],
    "negative": ["Very disappointed.", "Would not recommend.", "Returning it.", "Not what I expected.",
                 "Save your money.", "Regret this purchase.", "Won't order again."],
    "neutral": ["It's okay.", "Does the job.", "Nothing special.", "Average overall.", "It's fine, I guess.",
                "Mixed feelings about this one."],
}
CONNECT = [", but ", "; ", ". ", " and ", ", although ", ", though ", " - "]
THING = {"shoes": ["these shoes", "the pair", "these", "the shoes"], "apparel": ["this", "the fabric", "it"],
         "outdoor": ["this", "the gear", "it"], "electronics": ["this device", "it", "the unit"],
         "home": ["this", "it"], "beauty": ["this", "the formula", "it"], "kitchen": ["this", "it"], "sports": ["this", "it"]}
OPENERS = {"positive": ["", "", "Great purchase: ", "So happy: ", "Update after a month: ", "Honestly, "],
           "negative": ["", "", "Ugh. ", "Disappointed: ", "Honestly, ", "Be warned: "],
           "neutral": ["", "", "Hmm. ", "So, ", "Honestly, "]}
ASPECT_ZH = {
    "size": {"positive": ["尺码很准", "大小刚好", "按平时尺码买的，很合脚", "版型合身"],
             "negative": ["尺码偏小", "太紧了，得换大一码", "尺码偏大", "太宽松了"]},
    "quality": {"positive": ["质量很好", "做工扎实", "用料很好", "很耐用"],
                "negative": ["质量很差", "用了两周就坏了", "线头开了", "做工粗糙"]},
    "shipping": {"positive": ["发货很快", "物流很快", "提前两天到了", "包装完好"],
                 "negative": ["物流太慢", "晚了一周才到", "到货时盒子被压坏了", "快递很慢"]},
    "price": {"positive": ["性价比很高", "价格实惠", "物超所值"],
              "negative": ["价格太贵", "不值这个价", "性价比很低"]},
}
GENERAL_ZH = {"positive": ["很喜欢！", "会回购。", "强烈推荐。"], "negative": ["很失望。", "不推荐。", "准备退货。"],
              "neutral": ["还行吧。", "一般般。", "中规中矩。"]}


def make_reviews(rng, products, n_en=640, n_zh=140):
    reviews = []
    for i in range(n_en + n_zh):
        zh = i >= n_en
        p = rng.choice(products)
        aspects_all = ["quality", "shipping", "price"] + (["size"] if p["category"] in ("shoes", "apparel", "sports") else [])
        n_asp = rng.choices([0, 1, 2, 3], weights=[0.12, 0.38, 0.38, 0.12])[0]
        chosen = rng.sample(aspects_all, min(n_asp, len(aspects_all)))
        mood = rng.choices(["positive", "negative", "mixed"], weights=[0.5, 0.3, 0.2])[0]
        labels = []
        for a in chosen:
            if mood == "mixed":
                pol = rng.choice(["positive", "negative"])
            else:
                pol = mood if rng.random() < 0.85 else ("negative" if mood == "positive" else "positive")
            labels.append((a, pol))
        pos = sum(pol == "positive" for _, pol in labels)
        neg = len(labels) - pos
        if not labels:
            sentiment = "neutral" if mood == "mixed" else mood
        elif pos and neg:
            sentiment = "neutral" if abs(pos - neg) == 0 else ("positive" if pos > neg else "negative")
        else:
            sentiment = "positive" if pos else "negative"
        rating = {"positive": rng.choice([4, 5, 5]), "neutral": 3, "negative": rng.choice([1, 1, 2])}[sentiment]
        bank, general = (ASPECT_ZH, GENERAL_ZH) if zh else (ASPECT_EN, GENERAL_EN)
        spans = [(a, pol, rng.choice(bank[a][pol])) for a, pol in labels]
        if zh:
            text = "，".join(s for _, _, s in spans)
            if not spans or rng.random() < 0.5:
                text = (text + "，" if text else "") + rng.choice(general[sentiment])
            elif not text.endswith("。"):
                text += "。"
        else:
            parts = []
            for j, (_, _, s) in enumerate(spans):
                if j == 0:
                    parts.append(s)
                else:
                    c = rng.choice(CONNECT)
                    parts.append(c + (s[0].upper() + s[1:] if c.strip() in (".",) else s))
            text = "".join(parts)
            if text:
                text = rng.choice(OPENERS[sentiment]) + text
                text = text[0].upper() + text[1:]
                if rng.random() < 0.35 and spans:
                    thing = rng.choice(THING[p["category"]])
                    text = text.rstrip(".") + f". Overall {thing} {rng.choice(['is', 'feels', 'seems'])} " \
                        f"{ {'positive': rng.choice(['great', 'lovely', 'a keeper']), 'negative': rng.choice(['a letdown', 'not good', 'meh']), 'neutral': rng.choice(['okay', 'fine', 'average'])}[sentiment] }."
                elif not text.endswith((".", "!")):
                    text += rng.choice([".", ".", "!"])
            if not spans or rng.random() < 0.3:
                text = (text + " " if text else "") + rng.choice(general[sentiment])
        day = rng.uniform(0, DAYS)
        reviews.append({
            "review_id": f"R{5001 + i}", "product_id": p["product_id"], "rating": rating, "lang": "zh" if zh else "en",
            "text": text, "sentiment": sentiment,
            "aspects": [{"aspect": a, "polarity": pol, "span": s} for a, pol, s in spans],
            "date": (START + dt.timedelta(days=day)).strftime("%Y-%m-%d"),
        })
    return reviews


# -------------------------------------------------------------- knowledge base

def kb_records():
    recs = []
    for e in ENTRIES:
        for f in e["facts"]:
            assert f.lower() in e["text"].lower(), (e["id"], f)
        for q, f in e["heldout"]:
            assert f.lower() in e["text"].lower(), (e["id"], f)
        recs.append({"id": e["id"], "title": e["title"], "text": e["text"], "topic": e["topic"], "lang": "en",
                     "facts": e["facts"], "questions": e["ask"]})
    for e in ENTRIES:
        if e["zh"]:
            title, text = e["zh"]
            recs.append({"id": e["id"] + "-zh", "title": title, "text": text, "topic": e["topic"], "lang": "zh",
                         "facts": [f for f in e["facts"] if f in text], "translation_of": e["id"]})
    return recs


def kb_markdown(recs):
    out = [f"# {SHOP} help centre\n",
           "Policies and FAQ of the fictional shop Brightcart. Each `##` section is one entry; "
           "the `{#id}` after its title is the entry's stable id.\n"]
    for r in recs:
        out.append(f"## {r['title']} {{#{r['id']}}}\n\n{r['text']}\n")
    return "\n".join(out)


def questions(rng):
    """Held-out evaluation set: paraphrases never used in the dialogues."""
    qs, n = [], 0
    for e in ENTRIES:
        for q, fact in e["heldout"]:
            n += 1
            qs.append({"qid": f"Q{n:03d}", "type": "in_scope", "question": q, "kb_id": e["id"], "fact": fact,
                       "handoff": False, "lang": "en"})
    for first, first_id, follow, kb_id, fact in FOLLOW_UPS:
        n += 1
        qs.append({"qid": f"Q{n:03d}", "type": "follow_up", "question": follow, "kb_id": kb_id, "fact": fact,
                   "history": [{"role": "user", "content": first}], "history_kb_id": first_id,
                   "handoff": False, "lang": "en"})
    for q, reason in OUT_OF_SCOPE:
        n += 1
        qs.append({"qid": f"Q{n:03d}", "type": "handoff", "question": q, "kb_id": None, "fact": None,
                   "handoff": True, "reason": reason, "lang": "en"})
    for kb_id, q, fact in MORE_HELDOUT:      # appended, so that the qids above stay put
        n += 1
        qs.append({"qid": f"Q{n:03d}", "type": "in_scope", "question": q, "kb_id": kb_id, "fact": fact,
                   "handoff": False, "lang": "en"})
    # per entry, 2 of its in-scope questions (seeded) form the "dev" split for tuning; the rest are "test"
    for e in ENTRIES:
        mine = [q for q in qs if q["type"] == "in_scope" and q["kb_id"] == e["id"]]
        dev = set(rng.sample(range(len(mine)), 2))
        for i, q in enumerate(mine):
            q["split"] = "dev" if i in dev else "test"
    return qs


# ------------------------------------------------------------------ dialogues

SYSTEM_PROMPTS = [
    f"You are the customer support assistant of {SHOP}, an online shop. Answer only from {SHOP}'s policies. "
    "Be brief and friendly. If you cannot help, offer to hand the conversation to a human agent.",
    f"You help {SHOP} customers with orders, shipping, returns, sizes, payment and warranty. Use the shop's "
    "policies, never invent facts, and never share another customer's information.",
    f"You are {SHOP}'s support agent. Reply in two or three sentences, state the policy facts exactly, "
    "and hand off to a human when the request is outside the policies.",
]
HELLO = ["", "", "Hi, ", "Hello! ", "Hey, ", "Hi there. ", "Good morning, ", "Quick question: ", "Hello, ", "Hi team, "]
THANKS_USER = ["", "", "", " Thanks!", " Thank you.", " Thanks in advance.", " Cheers."]
LOWER_START = lambda s: s[0].lower() + s[1:] if s[:2] != "I " and not s[:2].isupper() else s  # noqa: E731
A_OPEN = ["", "", "", "Happy to help! ", "Sure! ", "Good question. ", "Thanks for reaching out. ", "Of course. ",
          "Great question! ", "Absolutely. "]
A_CLOSE = ["", "", " Anything else I can help with?", " Let me know if you have other questions.",
           " Is there anything else?", " Happy shopping!", " Hope that helps!"]
BYE_USER = ["Thanks, that's all.", "Perfect, thank you!", "Great, thanks for the help.", "Got it, thanks.",
            "Okay, that answers it.", "Awesome, thanks!", "That's helpful, bye!"]
BYE_ASSIST = ["You're welcome! Have a great day.", "Glad I could help. Enjoy your order!",
              "Anytime! Take care.", "You're welcome, happy shopping!", "My pleasure. Have a nice day!"]
RELATED = {
    "returns": ["refund-timing", "return-shipping-cost", "exchanges", "returns-shoes", "returns-electronics"],
    "shipping": ["delivery-times", "shipping-fees", "express-shipping", "order-tracking", "international-shipping"],
    "orders": ["order-tracking", "change-address", "cancel-order", "damaged-item"],
    "payment": ["payment-methods", "pay-later", "promo-codes", "gift-cards"],
    "warranty": ["damaged-item", "returns-electronics", "contact-hours"],
    "sizes": ["exchanges", "returns-shoes", "size-guide-shoes", "size-guide-apparel"],
    "gift-cards": ["promo-codes", "payment-methods", "gift-wrap"],
    "account": ["privacy", "loyalty-program", "account-password"],
    "contact": ["order-tracking", "returns-window"],
    "sustainability": ["store-pickup", "returns-shoes"],
    "products": ["product-care", "warranty", "international-shipping"],
}
FOLLOW_TRAIN = [  # (kb id of first turn, follow-up text, kb id of answer) for training dialogues
    ("returns-window", "And what about shoes?", "returns-shoes"),
    ("returns-window", "Is it different for electronics?", "returns-electronics"),
    ("returns-shoes", "And for a jacket?", "returns-window"),
    ("shipping-fees", "How long will it take to arrive?", "delivery-times"),
    ("delivery-times", "Can I get it faster?", "express-shipping"),
    ("exchanges", "Do I pay for that?", "return-shipping-cost"),
    ("payment-methods", "Can I pay in installments?", "pay-later"),
    ("warranty", "And for hiking boots?", "warranty"),
    ("size-guide-shoes", "And for t-shirts?", "size-guide-apparel"),
    ("returns-window", "When would I get the refund?", "refund-timing"),
]
HANDOFF_USER = ["I want to talk to a human.", "Can I speak with a real person?", "Please transfer me to an agent.",
                "This isn't helping, get me a manager.", "I need someone from your team to call me."]
HANDOFF_ASSIST = ["Of course. I'm handing this conversation to a member of our support team now; they'll reply here shortly.",
                  "No problem, I'm transferring you to a human agent. Our team is available Monday to Friday 8am-8pm ET.",
                  "I understand. Let me connect you with a colleague from our support team who can take it from here."]
OOS_ASSIST = ["I'm sorry, I can only help with {shop} orders, shipping, returns, sizes, payment and warranty. "
              "Would you like me to connect you with a person from our team?",
              "That's outside what I can help with here: I'm {shop}'s shopping assistant. Is there anything about an order I can do for you?"]
ORDER_STATUS = [("processing", "is being packed at our warehouse and should leave within one business day"),
                ("shipped", "shipped on {ship} with {carrier}; the tracking number is {track} and delivery is expected on {eta}"),
                ("out_for_delivery", "is out for delivery today with {carrier} (tracking {track})"),
                ("delivered", "was delivered on {eta} and signed for at the front door"),
                ("delayed", "is delayed at the {carrier} hub; the new estimate is {eta}")]
ORDER_ASK = ["Where is my order {oid}?", "Can you check the status of order {oid}?", "Any update on {oid}?",
             "My order number is {oid}, when will it arrive?", "Has order {oid} shipped yet?"]


def _question(rng, text):
    return rng.choice(HELLO) + (LOWER_START(text) if rng.random() < 0.5 else text) + rng.choice(THANKS_USER)


def _answer(rng, entry):
    return (rng.choice(A_OPEN) + rng.choice(entry["answers"]) + rng.choice(A_CLOSE)).strip()


def make_dialogues(rng, products, n=360):
    by_id = {e["id"]: e for e in ENTRIES}
    dialogues = []
    for i in range(n):
        sys_msg = {"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}
        kind = rng.choices(["chain", "follow", "order", "handoff", "oos"], weights=[0.5, 0.2, 0.18, 0.06, 0.06])[0]
        msgs = [sys_msg]
        if kind == "chain":
            e = rng.choice(ENTRIES)
            msgs += [{"role": "user", "content": _question(rng, rng.choice(e["ask"]))},
                     {"role": "assistant", "content": _answer(rng, e)}]
            if rng.random() < 0.65:
                e2 = by_id[rng.choice([x for x in RELATED.get(e["topic"], []) if x != e["id"]] or ["contact-hours"])]
                msgs += [{"role": "user", "content": _question(rng, rng.choice(e2["ask"]))},
                         {"role": "assistant", "content": _answer(rng, e2)}]
        elif kind == "follow":
            a, follow, b = rng.choice(FOLLOW_TRAIN)
            msgs += [{"role": "user", "content": _question(rng, rng.choice(by_id[a]["ask"]))},
                     {"role": "assistant", "content": _answer(rng, by_id[a])},
                     {"role": "user", "content": follow},
                     {"role": "assistant", "content": rng.choice(by_id[b]["answers"])}]
        elif kind == "order":
            oid = f"BC-{rng.randint(10000, 99999)}"
            status, tmpl = rng.choice(ORDER_STATUS)
            ship = START + dt.timedelta(days=rng.randint(60, 110))
            eta = ship + dt.timedelta(days=rng.randint(2, 5))
            carrier = rng.choice(["UPS", "USPS", "FedEx"])
            track = f"1Z{rng.randint(10 ** 9, 10 ** 10 - 1)}"
            p = rng.choice(products)
            record = {"order_id": oid, "status": status, "items": [p["name"]], "carrier": carrier,
                      "tracking": track, "shipped": ship.strftime("%Y-%m-%d"), "eta": eta.strftime("%Y-%m-%d")}
            sys_msg["content"] += " Order lookup result: " + json.dumps(record, ensure_ascii=False)
            fact = tmpl.format(ship=ship.strftime("%B %d").replace(" 0", " "), eta=eta.strftime("%B %d").replace(" 0", " "),
                               carrier=carrier, track=track)
            if rng.random() < 0.5:
                msgs += [{"role": "user", "content": _question(rng, rng.choice(["Where is my order?", "I'm waiting for my package.",
                                                                                "Has my order shipped?"]))},
                         {"role": "assistant", "content": "I can check that for you. What's your order number?"},
                         {"role": "user", "content": rng.choice(["It's {oid}.", "{oid}", "Order {oid}, thanks."]).format(oid=oid)}]
            else:
                msgs += [{"role": "user", "content": _question(rng, rng.choice(ORDER_ASK).format(oid=oid))}]
            msgs += [{"role": "assistant", "content": f"Your order {oid} ({p['name']}) {fact}." + rng.choice(A_CLOSE)}]
        elif kind == "handoff":
            e = rng.choice(ENTRIES)
            if rng.random() < 0.5:
                msgs += [{"role": "user", "content": _question(rng, rng.choice(e["ask"]))},
                         {"role": "assistant", "content": _answer(rng, e)}]
            msgs += [{"role": "user", "content": rng.choice(HANDOFF_USER)},
                     {"role": "assistant", "content": rng.choice(HANDOFF_ASSIST)}]
        else:
            q = rng.choice(["Can you recommend a good movie?", "What's 15% of 240?", "Who is the president of France?",
                            "Can you do my homework?", "What time is it in Tokyo?", "Write me a poem about cats."])
            msgs += [{"role": "user", "content": q},
                     {"role": "assistant", "content": rng.choice(OOS_ASSIST).format(shop=SHOP)}]
        if rng.random() < 0.45 and kind != "handoff":
            msgs += [{"role": "user", "content": rng.choice(BYE_USER)},
                     {"role": "assistant", "content": rng.choice(BYE_ASSIST)}]
        dialogues.append({"messages": msgs})
    return dialogues


# -------------------------------------------------------------------- write

PRODUCT_COLUMNS = ["product_id", "name", "brand", "category", "subcategory", "color", "material", "sizes", "price",
                   "currency", "weight_g", "features", "added_on", "category_zh"]


def _csv(rows, columns):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def _jsonl(rows):
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows)


def generate(out_dir):
    rng = random.Random(SEED)
    products = make_products(random.Random(rng.random()))
    events = make_events(random.Random(rng.random()), products)
    reviews = make_reviews(random.Random(rng.random()), products)
    kb = kb_records()
    qs = questions(random.Random(rng.random()))
    dialogues = make_dialogues(random.Random(rng.random()), products)
    files = {
        "products.csv": _csv(products, PRODUCT_COLUMNS),
        "events.csv": _csv(events, ["user_id", "product_id", "event", "timestamp"]),
        "reviews.jsonl": _jsonl(reviews),
        "knowledge_base.jsonl": _jsonl(kb),
        "knowledge_base.md": kb_markdown([r for r in kb if r["lang"] == "en"]),
        "faq.csv": _csv([r for r in kb if r["lang"] == "en"], ["id", "title", "text", "topic"]),
        "support_questions.jsonl": _jsonl(qs),
        "support_dialogues.jsonl": _jsonl(dialogues),
    }
    os.makedirs(out_dir, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return {name: len(text.encode()) for name, text in files.items()}, {
        "products": len(products), "events": len(events), "reviews": len(reviews), "kb": len(kb),
        "questions": len(qs), "dialogues": len(dialogues)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=OUT_DIR)
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare with --out")
    args = ap.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            sizes, _ = generate(tmp)
            bad = [n for n in sizes if not os.path.exists(os.path.join(args.out, n))
                   or not filecmp.cmp(os.path.join(tmp, n), os.path.join(args.out, n), shallow=False)]
        print("identical" if not bad else f"differ: {bad}")
        return 1 if bad else 0
    sizes, counts = generate(args.out)
    for n, s in sizes.items():
        print(f"{n:28s} {s / 1024:8.1f} KiB")
    print(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
