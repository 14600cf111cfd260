"""A deterministic, deliberately nasty text corpus for tokenizer tests and benchmarks.

`lines()` returns >= 5,000 strings (seeded, so every run sees the same ones):
English product text, Chinese (simplified and traditional), Japanese, Korean,
other scripts, emoji with ZWJ sequences and skin tones, combining accents,
numbers with separators, prices and units, URLs and e-mail addresses, code,
runs of spaces / tabs / newlines, control characters, very long words, empty
strings, contractions and added tokens in the text. `invalid_utf8()` returns
byte strings that are not UTF-8. `big_text()` concatenates lines into a large
mixed document for throughput measurements.
"""

from __future__ import annotations

import random
import unicodedata

SEED = 20240603

ENGLISH = [
    "Ultra-soft cotton crew-neck T-shirt, pre-shrunk and tag-free.",
    "It's the best-selling running shoe we've ever made; you'll love it!",
    "Don't miss our BLACK FRIDAY deal: 40% off all outerwear (today only).",
    "Stainless steel water bottle keeps drinks cold for 24 hours & hot for 12.",
    "Wireless noise-cancelling headphones with 30-hour battery life",
    "Men's slim-fit chinos — available in Navy, Khaki & Olive.",
    "She said \"it's perfect\" and I'd agree; they're worth every penny.",
    "Y'all'd've loved this: it's the O'Reilly edition, isn't it?",
    "Free shipping on orders over $50. Returns accepted within 30 days.",
    "Customer review: 5/5 stars!!! Arrived early, fits true to size.",
    "WARNING: Choking hazard -- small parts. Not for children under 3 yrs.",
    "Dimensions: 12.5\" x 8.25\" x 3\"; Weight: 2.2 lbs (1 kg).",
    "Q: Is it dishwasher-safe? A: Yes, top rack only.",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!",
    "Ergonomic office chair w/ lumbar support, adj. armrests & 360° swivel",
    "Order #A-10293-XZ shipped via UPS Ground, tracking 1Z999AA10123456784.",
    "Hello,World!How's it going?Fine...thanks",
    "SKU: TSHIRT-BLK-XL | EAN: 4006381333931 | MPN: 23-ABC/7",
    "naïve café résumé façade Ångström coöperate jalapeño Zürich São Paulo",
    "’Tis the season — “smart quotes” and ‘single ones’ … ellipsis…",
    "I'M SURE THEY'LL SAY IT'S FINE, DON'T YOU THINK? WE'VE SEEN IT.",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D ' s '' ''' 'x",
]

CHINESE = [
    "这款无线耳机音质清晰，续航时间长达三十小时。",
    "我们提供七天无理由退货服务，请放心购买！",
    "這款無線耳機音質清晰，續航時間長達三十小時。",
    "我們提供七天無理由退貨服務，請放心購買！",
    "价格：¥199.00（含税），包邮。",
    "你好，世界！这是一个测试。",
    "繁體中文與简体中文混合在一起的句子。",
    "龍龜鬱齉 — 罕见字：𠀀𠀁𪚥𫝀。",
]

JAPANESE = [
    "このシャツは綿100%で、洗濯機で洗えます。",
    "日本語のテキストとカタカナ、ひらがな、漢字ー。",
    "ｶﾀｶﾅ（半角）とカタカナ（全角）",
    "送料無料！今すぐご注文ください。",
    "「こんにちは」と彼は言った。",
]

KOREAN = [
    "이 제품은 무료 배송이 가능합니다.",
    "한국어 텍스트입니다. 가격은 ₩39,000원입니다!",
    "안녕하세요? 반갑습니다~ ㅋㅋㅋ ㅠㅠ",
    "각 조합형 자모 ᄒᆞᆫ글",
]

OTHER_SCRIPTS = [
    "Россия и Українa: цена 1 299 ₽, скидка 20%.",
    "Ελληνικά: ΟΔΥΣΣΕΥΣ ὀδυσσεύς ΣΊΣΥΦΟΣ",
    "مرحبا بالعالم! السعر ١٢٣٫٤٥ ريال",
    "שלום עולם, מחיר: ₪59.90",
    "हिन्दी पाठ: कीमत ₹४५०, मुफ़्त शिपिंग",
    "ภาษาไทย ราคา ๑๒๓ บาท",
    "Tiếng Việt: Giá 1.299.000₫ — Miễn phí vận chuyển",
    "Türkçe: İstanbul'da ışık, ĞÜŞİÖÇ ğüşiöç",
    "Deutsch: Straße, GROẞE Größe, Maßband",
    "ʻŌlelo Hawaiʻi; Ꭰꮳꮃ; ⴰⵣⵓⵍ; ꯃꯤꯇꯩ",
]

EMOJI = [
    "👨‍👩‍👧‍👦 family", "👩🏽‍💻 coder", "🧑🏿‍🚀", "👍🏻👍🏼👍🏽👍🏾👍🏿", "🇺🇸🇯🇵🇫🇷🇩🇪",
    "❤️ ❤ ♥️", "1️⃣2️⃣#️⃣", "🏳️‍🌈🏴‍☠️", "😀😃😄😁😆😅🤣😂🙂", "⭐⭐⭐⭐☆ 4/5",
    "🛒🛍️💳📦🚚", "🤷‍♀️🤦🏽‍♂️", "👁‍🗨", "🫶🏼",
]

COMBINING = [
    "e\u0301 n\u0303 a\u0300 o\u0308 u\u0302", "a\u0301\u0323\u0302 stacked",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354LGO",
    "\u0301leading combining mark", "x\u20dd x\u20e3 enclosing", "e\u0301\u0301\u0301",
    "ﬁ ﬂ ﬃ ligatures ㎏ ㎡ ℃ ™ ① ⑩ Ⅻ ½ ¼ ² ³",
    "ǅ ǈ ǋ titlecase; İ ı K Å", "\u1e9b\u0323 and \u0344",
]

NUMBERS = [
    "1,234,567.89", "1.234.567,89", "1 234 567", "12'345'678", "0.000001", "-42", "+3.14e-10",
    "1234567890123456789012345678901234567890", "٠١٢٣٤٥٦٧٨٩", "１２３４５", "४५६", "๑๒๓",
    "3/4", "2024-06-03T12:34:56Z", "v1.2.3-beta.4", "1st 2nd 3rd 4th", "10:30am", "+1 (555) 010-9999",
    "#1", "No.5", "100,000+ sold", "0x1F 0b1010 0o17 1_000_000",
]

PRICES = [
    "$19.99", "€1.299,00", "£5", "¥1000", "₹450", "₩39,000", "CHF 12.50", "19,99 €", "$1,000,000",
    "3×4 cm", "5kg", "12 oz", "220V/50Hz", "50%", "1/2\"", "6'2\"", "37.5°C", "98.6 °F", "5µm",
    "2.5mm²", "1TB SSD", "16GB RAM", "4K@60Hz", "-20%", "BUY 2 GET 1 FREE", "USD 9.99/mo",
]

URLS = [
    "https://www.example.com/products/shoes?color=red&size=42#reviews",
    "http://localhost:8080/api/v1/orders/12345",
    "www.shop.co.uk/sale", "ftp://files.example.org/pub/file.tar.gz",
    "mailto:support@example.com", "john.doe+newsletter@mail.example.co.jp",
    "first_last@sub-domain.example-shop.com", "https://例子.测试/路径?查询=值",
    "https://xn--fsq.xn--0zwm56d/", "@username #hashtag #BlackFriday2024",
    "C:\\Users\\Admin\\Documents\\invoice_2024.pdf", "/usr/local/bin/python3.11",
]

CODE = [
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "const price = items.reduce((s, it) => s + it.price * it.qty, 0);",
    "SELECT * FROM orders WHERE total > 100 AND status = 'shipped';",
    "{\"id\": 42, \"name\": \"Shoe\", \"tags\": [\"red\", \"sale\"], \"price\": 59.0}",
    "<div class=\"product\"><span>$9.99</span></div>",
    "if x != y && z >= 0 || !flag: pass",
    "    \tindented\twith\ttabs",
    "#include <stdio.h>\nint main(void){printf(\"hi\\n\");return 0;}",
    "a_b_c __init__ __name__ == '__main__' self.x=1;",
    "λx.x → ∀y∈ℝ: y² ≥ 0 ≠ ∞ ≈ √2",
    "```python\nprint('hello')\n```",
]

WHITESPACE = [
    "", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", "\t\t\t", " \t \n ", "a  b", "a   b",
    "a\n\nb", "a \n b", "a\t \tb", "  leading", "trailing  ", " both ", "word \n", "\n word",
    "a\u00a0b", "a\u3000b", "a\u2009b", "a\u200bb", "a\u2028b", "a\u2029b", "a\u0085b",
    "a\u202fb", "a\u205fb", "a\u1680b", " \u00a0 ", "\r\r\n\n", "x \r\ny", "\n\t\n",
    "hello  world", "end.  Next", "tab\tseparated\tvalues", "  12  ", " 1 2 3 ", "\n1\n",
]

CONTROL = [
    "a\x00b", "\x01\x02\x03", "bell\x07", "\x1b[31mred\x1b[0m", "del\x7f", "\x85nel",
    "\u200eltr\u200f", "\ufeffbom", "soft\u00adhyphen", "\u2060wj", "\x0bvt\x0cff",
    "\ufffdreplacement", "\ue000private", "\x1c\x1d\x1e\x1f", "zw\u200cnj\u200dj",
    "\u202e reversed \u202c", "\U000e0041tag",
]

ADDED = [
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>", "<|im_sta", "<|im_start|", "x<|im_end|>y", "< |im_start| >",
    "[CLS] text [SEP] more [SEP]", "[MASK][MASK]", "[mask] [Mask]", "[UNK]", "[PAD] pad",
    "<repo_name>owner/repo<file_sep>main.py", "<|im_start|><|im_start|>",
]


def _long_words(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        "a" * 5000,
        "ab" * 1500,
        "".join(rng.choice(letters) for _ in range(300)),
        "Pneumonoultramicroscopicsilicovolcanoconiosis" * 20,
        "9" * 800,
        "😀" * 300,
        "漢" * 400,
        "!" * 600,
        "-" * 250 + ">",
        " " * 700 + "x",
        "\n" * 300,
        "é" * 150,
        "e\u0301" * 150,
        "https://example.com/" + "a/" * 400,
        "x" * 99, "x" * 100, "x" * 101,  # around BERT's max_input_chars_per_word
        "".join(rng.choice(letters + "0123456789") for _ in range(2000)),
    ]


def _assigned_old_chars() -> list[str]:
    """Code points assigned since Unicode 3.2 (the versions of Python and of the
    Rust / Oniguruma tables agree on them), excluding surrogates."""
    old = unicodedata.ucd_3_2_0
    out = []
    for cp in range(0x20, 0x30000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        cat = old.category(c)
        if cat != "Cn" and cat == unicodedata.category(c):
            out.append(c)
    return out


POOLS = {
    "english": ENGLISH, "chinese": CHINESE, "japanese": JAPANESE, "korean": KOREAN,
    "scripts": OTHER_SCRIPTS, "emoji": EMOJI, "combining": COMBINING, "numbers": NUMBERS,
    "prices": PRICES, "urls": URLS, "code": CODE, "whitespace": WHITESPACE, "control": CONTROL,
    "added": ADDED,
}

SEPARATORS = [" ", "  ", "", "\n", "\t", " \n", ", ", ". ", "\u3000", "\r\n", " - ", "/"]


def lines(n: int = 6000, seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for pool in POOLS.values():
        out.extend(pool)
    out.extend(_long_words(rng))
    rare = _assigned_old_chars()
    names = list(POOLS)
    while len(out) < n:
        kind = rng.random()
        if kind < 0.08:
            # random assigned characters, any script / category
            out.append("".join(rng.choice(rare) for _ in range(rng.randint(1, 40))))
        elif kind < 0.12:
            out.append(rng.choice(WHITESPACE + CONTROL) * rng.randint(1, 5))
        else:
            parts = []
            for _ in range(rng.randint(1, 6)):
                pool = POOLS[rng.choice(names)]
                s = rng.choice(pool)
                if len(s) > 20 and rng.random() < 0.3:  # cut anywhere
                    a = rng.randint(0, len(s) - 1)
                    s = s[a:a + rng.randint(1, 40)]
                parts.append(s)
                parts.append(rng.choice(SEPARATORS))
            out.append("".join(parts[:-1]))
    return out[:max(n, len(out))]


def invalid_utf8(seed: int = SEED) -> list[bytes]:
    rng = random.Random(seed + 1)
    fixed = [
        b"\xff", b"\xfe\xff", b"abc\x80def", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82(",
        b"\xf0\x9f\x98", b"\xf0\x9f\x98(", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf",
        b"\xe0\x80\xaf", b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80", b"\x80\x80\x80",
        b"ok \xe4\xbd\xa0\xe5\xa5 cut", "caf\u00e9".encode() + b"\xe9", b"\xef\xbb\xbfbom",
        b"<|im_start|>\xff<|im_end|>", b"[CLS]\xc3[SEP]", b"\x00\xff\x00",
    ]
    good = [s.encode() for s in ENGLISH + CHINESE + EMOJI + KOREAN]
    for _ in range(300):
        b = bytearray(rng.choice(good))
        for _ in range(rng.randint(1, 4)):
            if not b:
                break
            op = rng.random()
            i = rng.randrange(len(b))
            if op < 0.4:
                b[i] = rng.randrange(256)
            elif op < 0.7:
                del b[i]
            else:
                b.insert(i, rng.randrange(0x80, 0x100))
        fixed.append(bytes(b))
    return fixed


def big_text(n_bytes: int = 4 << 20, seed: int = SEED) -> list[str]:
    """Corpus lines repeated (shuffled) until they hold about n_bytes of UTF-8."""
    base = lines(seed=seed)
    rng = random.Random(seed + 2)
    out, size = [], 0
    while size < n_bytes:
        s = rng.choice(base)
        out.append(s)
        size += len(s.encode("utf-8", "surrogatepass")) + 1
    return out
