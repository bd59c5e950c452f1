#!/usr/bin/env python3
"""Generate tests/data/tokenizer_corpus.txt, the lines the tokenizer parity
test (tests/tokenizer_parity.rs) runs through both Strata and llama.cpp.

One test string per line. Escapes, undone by the test: \\n newline, \\t tab,
\\r carriage return, \\\\ backslash, \\u{XXXX} any code point. Everything
else is literal UTF-8. The output is deterministic (fixed seed).

Usage: scripts/gen-tokenizer-corpus.py   (writes the file in place)
"""
import os
import random

rng = random.Random(20240611)

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times.",
    "Call me Ishmael. Some years ago - never mind how long precisely - I went to sea.",
    "She sells sea shells by the sea shore; the shells she sells are surely seashells.",
    "A journey of a thousand miles begins with a single step.",
    "To be, or not to be, that is the question:",
    "In the beginning was the Word, and the Word was with God.",
    "The weather today is partly cloudy with a chance of rain in the afternoon.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The mitochondria is the powerhouse of the cell.",
    "Please remember to submit your report by Friday at 5 p.m.",
    "He said, \"I'll be there in ten minutes,\" but he never showed up.",
    "Rust's ownership model guarantees memory safety without a garbage collector.",
    "The committee's decision, announced on Tuesday, surprised everyone.",
    "Wait... what? Are you serious?! That's incredible!!!",
    "Mr. and Mrs. Dursley, of number four, Privet Drive, were proud to say that they were perfectly normal.",
    "Once upon a time, in a small village by the sea, there lived an old fisherman.",
    "Machine learning models are trained on large datasets to find patterns.",
    "The Eiffel Tower was completed in 1889 and is 330 metres tall.",
    "Don't count your chickens before they hatch.",
    "The U.S.A. and the U.K. signed the treaty; e.g., trade, i.e., tariffs, etc.",
    "Her e-mail address changed last year -- twice, actually.",
    "Well-known state-of-the-art methods aren't always the best choice.",
    "The recipe calls for 2 cups of flour, 1/2 cup of sugar, and 3 eggs.",
    "Temperatures ranged from -5°C to 12°C over the weekend.",
    "“Smart quotes” and ‘single ones’ — plus an em dash – and an en dash.",
    "The café served crème brûlée, jalapeño poppers, and a piña colada.",
    "Zoë and Chloë visited Ångström's lab in Malmö.",
    "naïve façade résumé coöperate déjà vu",
    "ALL CAPS SENTENCES ARE SHOUTING, AREN'T THEY?",
    "mIxEd CaSe TeXt Is HaRd To ReAd",
    "camelCaseIdentifier snake_case_identifier kebab-case-identifier PascalCase",
    "HTTPServerError XMLHttpRequest getHTTPResponseCode iPhone eBay",
    "O'Reilly, O'Brien and D'Angelo met at McDonald's.",
    "The year 2000 problem (Y2K) cost billions.",
]

CONTRACTIONS = [
    "I'm sure you're right, but they've said we'd better go.",
    "It's John's book; he'll want it back.",
    "I'M SURE YOU'RE RIGHT, BUT THEY'VE SAID WE'D BETTER GO.",
    "It'S wEiRd'Ll CaSe'Ve",
    "y'all ain't gonna believe this",
    "rock'n'roll 'til dawn",
    "'s 't 're 've 'm 'll 'd",
    "'S 'T 'RE 'VE 'M 'LL 'D",
    "don't won't can't shouldn't wouldn't couldn't mustn't",
    "the dogs' bones and the cats' toys",
    "'quoted' and ''double single'' quotes",
    "can’t won’t (curly apostrophes)",
    "he's she's it's we're they're I've you'd",
    "l'homme d'affaires aujourd'hui",
    "'twas the night before Christmas",
    "x's y't z'm",
]

SCRIPTS = [
    "Привет, как дела? Я изучаю русский язык.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Γειά σου Κόσμε! Η γλώσσα είναι ελληνική.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "مرحبا بالعالم! كيف حالك اليوم؟",
    "اللغة العربية جميلة جداً ١٢٣٤٥",
    "שלום עולם! מה שלומך?",
    "עברית נכתבת מימין לשמאל.",
    "नमस्ते दुनिया! आप कैसे हैं?",
    "हिन्दी भाषा देवनागरी लिपि में लिखी जाती है। १२३",
    "你好，世界！今天天气很好。",
    "我们正在测试分词器的正确性，包括标点符号。",
    "こんにちは世界！日本語のテキストです。",
    "カタカナとひらがなと漢字が混ざっています。",
    "안녕하세요 세계! 한국어 텍스트입니다.",
    "한글은 세종대왕이 만들었습니다.",
    "สวัสดีชาวโลก! ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Tiếng Việt có rất nhiều dấu thanh điệu.",
    "Türkçe karakterler: ğüşıöç ĞÜŞİÖÇ",
    "Polski: zażółć gęślą jaźń",
    "Deutsch: Größe, Straße, Übermäßig",
    "Español: ¿Dónde está la biblioteca? ¡Allí!",
    "Français : « Bonjour ! » dit-il.",
    "Português: ação, coração, não",
    "Ελληνικά και English mixed μαζί",
    "ქართული ენა",
    "Հայերեն լեզու",
    "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ",
    "አማርኛ ቋንቋ",
    "தமிழ் மொழி",
    "বাংলা ভাষা",
    "ગુજરાતી ભાષા",
    "ພາສາລາວ",
    "မြန်မာဘာသာ",
    "ខ្មែរ",
    "Монгол хэл",
    "Ελληνικά: ά έ ή ί ό ύ ώ ϊ ϋ ΐ ΰ",
    "e\\u{0301} vs é (decomposed vs composed)",
    "a\\u{0300}\\u{0301}\\u{0302} stacked marks",
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ text",
    "ﬁ ﬂ ﬀ ligatures and ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ",
    "𝐁𝐨𝐥𝐝 𝑰𝒕𝒂𝒍𝒊𝒄 𝔉𝔯𝔞𝔨𝔱𝔲𝔯 mathematical letters",
    "Ⅰ Ⅱ Ⅲ Ⅻ roman numerals",
    "𠜎𠜱𠝹𠱓 CJK extension B",
]

EMOJI = [
    "I love pizza 🍕 and ice cream 🍦!",
    "😀😃😄😁😆😅🤣😂",
    "👍 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿",
    "Family: 👨\\u{200D}👩\\u{200D}👧\\u{200D}👦 and couple 👩\\u{200D}❤\\u{FE0F}\\u{200D}👨",
    "Flags: 🇫🇷 🇯🇵 🇺🇸 🇧🇷 🇺🇦 🏳\\u{FE0F}\\u{200D}🌈",
    "Keycaps: 1\\u{FE0F}\\u{20E3} #\\u{FE0F}\\u{20E3} *\\u{FE0F}\\u{20E3}",
    "❤️ ♥ ☺ ✌️ ☀︎",
    "🧑\\u{200D}💻 coding, 👩🏽\\u{200D}🚀 astronaut",
    "🏴\\u{E0067}\\u{E0062}\\u{E0073}\\u{E0063}\\u{E0074}\\u{E007F} Scotland",
    "emoji at end 🎉",
    "🎉emoji at start",
    "mid🎉word",
    "🙂🙃🙂🙃🙂🙃🙂🙃🙂🙃🙂🙃",
    "🐍 Python, 🦀 Rust, ☕ Java",
]

CODE = [
    "def fibonacci(n):\\n    if n < 2:\\n        return n\\n    return fibonacci(n - 1) + fibonacci(n - 2)",
    "for i in range(10):\\n\\tprint(f\"{i:>3}: {i**2}\")",
    "fn main() {\\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\\n    println!(\"{:?}\", v);\\n}",
    "impl<'a, T: Clone + Send> Iterator for Foo<'a, T> { type Item = &'a T; }",
    "#include <stdio.h>\\nint main(void) {\\n    printf(\"Hello, world!\\\\n\");\\n    return 0;\\n}",
    "const add = (a, b) => a + b; // arrow function",
    "if (x !== null && x?.y?.z) { console.log(`value: ${x.y.z}`); }",
    "<div class=\"container\"><p id='intro'>Hello &amp; welcome</p></div>",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY name DESC;",
    "git commit -m \"Fix bug #123\" && git push origin main",
    "ls -la | grep \"\\.rs$\" | wc -l > count.txt 2>&1",
    "{\"name\": \"strata\", \"version\": \"0.1.0\", \"tags\": [\"llm\", \"gguf\"], \"ok\": true}",
    "x = [1, 2, 3]; y = {k: v for k, v in zip(\"abc\", x)}",
    "public static void main(String[] args) throws IOException {",
    "    return self.__dict__.get('_cache', None)",
    "a+=1;b-=2;c*=3;d/=4;e%=5;f**=6;g//=7;h<<=1;i>>=2;j&=k|l^m",
    "while(i<n){i++;}",
    "matrix[i][j] = matrix[i-1][j] + matrix[i][j-1];",
    "#!/usr/bin/env bash\\nset -euo pipefail\\necho \"$HOME\"",
    "regex: ^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\\\.[a-zA-Z]{2,}$",
    "C:\\\\Users\\\\Admin\\\\Documents\\\\file.txt",
    "// TODO(alice): refactor this --- it's ugly\\n/* block\\n   comment */",
    "<?php echo $var; ?>",
    "lambda x: x ** 2 if x > 0 else -x",
    "std::vector<std::pair<int, std::string>> v{{1, \"a\"}, {2, \"b\"}};",
    "@decorator\\nclass Foo(Base, metaclass=Meta):\\n    pass",
    "\\t\\tindented with tabs\\n    indented with spaces\\n\\t    mixed",
    "    \\n        \\n",
    "```python\\nprint('hi')\\n```",
    "| col1 | col2 |\\n|------|------|\\n| a    | b    |",
    "- [ ] todo\\n- [x] done\\n* bullet\\n1. numbered",
    "# Heading\\n## Subheading\\n**bold** _italic_ `code`",
    "key1=value1&key2=value%202&empty=",
]

NUMBERS = [
    "1234567890",
    "12345678901234567890123456789012345678901234567890",
    "3.14159265358979323846264338327950288419716939937510",
    "0.001 0.01 0.1 1.0 10.0 100.0 1e10 1.5e-7 6.022E23",
    "2024-01-15T13:45:30Z",
    "Dates: 01/02/2023, 2023.02.01, 1st Feb 2023, 15 March 1985",
    "Phone: +1 (555) 123-4567, +44 20 7946 0958",
    "$1,234,567.89 €99.99 £50 ¥10000 ₹500 ₿0.005",
    "50% off! 3/4 of 100 is 75. 2^10 = 1024.",
    "Version 1.2.3-beta.4+build.567",
    "IP 192.168.1.1 and ::1 and 2001:db8::ff00:42:8329",
    "٠١٢٣٤٥٦٧٨٩ ۰۱۲۳۴۵۶۷۸۹ ०१२३४५६७८९",
    "０１２３４５６７８９ fullwidth digits",
    "x² + y³ = z¹⁰, ½ + ¼ = ¾, H₂O",
    "100000 1000000 10000000 100000000",
    "007 0042 000",
    "-42 +42 ±42 −42",
    "1,000,000 vs 1.000.000 vs 1 000 000",
    "π ≈ 3.14, e ≈ 2.718, √2 ≈ 1.414, ∞",
    "∑ᵢ xᵢ² ∫₀¹ f(x) dx ≤ ∀x ∃y x≠y",
    "12:30pm 23:59:59.999",
    "ISBN 978-3-16-148410-0",
    "0x1F 0b1010 0o777 1_000_000",
]

WHITESPACE = [
    "two  spaces",
    "three   spaces",
    "many          spaces          here",
    "   leading spaces",
    "trailing spaces   ",
    " ",
    "  ",
    "     ",
    "\\t",
    "\\ttab at start",
    "tab\\there",
    "tabs\\t\\t\\tmany",
    "\\n",
    "\\n\\n",
    "\\n\\n\\n\\n",
    "line one\\nline two",
    "para one\\n\\npara two",
    "windows\\r\\nline endings\\r\\n",
    "\\r",
    "mixed \\t \\n \\r\\n  \\t\\t  end",
    "word\\n word\\n  word\\n   word",
    "  \\n  \\n  ",
    "trailing newline\\n",
    "\\nleading newline",
    "a \\n b",
    "a\\u{00A0}b non-breaking space",
    "a\\u{3000}b ideographic space",
    "a\\u{2009}b thin space and a\\u{202F}b narrow",
    "a\\u{200B}b zero-width space",
    "a\\u{0085}b next line",
    "a\\u{2028}b line separator\\u{2029}para",
    "\\u{FEFF}byte order mark",
    "a\\u{000B}b\\u{000C}c vertical tab and form feed",
    "a\\u{001F}b\\u{001C}c unit/file separators",
    "  \\t  \\t  ",
    "x\\u{00A0}\\u{00A0}\\u{00A0}y",
    " !",
    "  !",
    "\\n!",
    " 1",
    "  1",
    " 12",
]

URLS = [
    "https://www.example.com/path/to/page?query=value&other=123#section",
    "Visit http://localhost:8080/api/v1/users/42 for details.",
    "ftp://files.example.org/pub/README.txt",
    "mailto:someone@example.com",
    "Contact us at support@example.co.uk or sales+tag@sub.domain.io.",
    "https://en.wikipedia.org/wiki/Byte_pair_encoding",
    "git@github.com:owner/repo.git",
    "/usr/local/bin/python3 ~/.cache/strata/models ./relative/../path",
    "www.google.com/search?q=rust+tokenizer&hl=en",
    "https://例子.测试/路径?查询=值",
]

SPECIAL = [
    "<|im_start|>user\\nHello!<|im_end|>",
    "<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\nWhat is 2+2?<|im_end|>\\n<|im_start|>assistant\\n",
    "<|endoftext|>",
    "text before<|endoftext|>text after",
    "<|endoftext|><|endoftext|>",
    "<|im_start|><|im_end|>",
    "<|im_start|>",
    "<|im_start",
    "im_start|>",
    "<|im_start|assistant",
    "< |im_start| >",
    "<|IM_START|>",
    " <|im_start|> spaced <|im_end|> ",
    "<|im_end|>\\n",
    "\\n<|im_start|>",
    "<repo_name>owner/repo<file_sep>main.py",
    "<filename>src/lib.rs\\n<gh_stars>1000",
    "<issue_start>Bug report<issue_comment>Fixed<issue_closed>",
    "<jupyter_start><jupyter_code>print(1)<jupyter_output>1<empty_output>",
    "<reponame>x<reponame>",
    "<<|im_start|>>",
    "<|im_start|><|im_start|><|im_start|>",
    "a<|endoftext|>b<|im_start|>c<|im_end|>d",
    "The token <|endoftext|> marks the end.",
    "<|fim_prefix|>def f():<|fim_suffix|>return 1<|fim_middle|>",
    "<s>[INST] hello [/INST]</s>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>",
    "<unk><pad><mask>",
]

# Word pools for random lines.
WORDS_EN = ("the of and to in is you that it he was for on are as with his they at be this have "
            "from or one had by word but not what all were we when your can said there use an each "
            "which she do how their if will up other about out many then them these so some her would "
            "make like him into time has look two more write go see number no way could people my than "
            "first water been call who oil its now find long down day did get come made may part "
            "tokenizer merge vocabulary encoding decoder byte pair unicode whitespace").split()
FRAGMENTS = SCRIPTS + EMOJI + NUMBERS + URLS
PUNCT = list(".,;:!?-—–…()[]{}<>\"'`~@#$%^&*_+=|/\\")
SPACES = [" ", " ", " ", "  ", "   ", "\\t", "\\n", "\\n\\n", " \\n", "\\r\\n", "\\u{00A0}", "\\u{3000}"]


def random_line():
    kind = rng.randrange(8)
    if kind == 0:
        # English-ish words with random punctuation and spacing.
        out = []
        for _ in range(rng.randint(3, 18)):
            w = rng.choice(WORDS_EN)
            r = rng.random()
            if r < 0.1:
                w = w.upper()
            elif r < 0.2:
                w = w.capitalize()
            elif r < 0.25:
                w = w + rng.choice(["'s", "'t", "'re", "'ll", "'VE", "'D", "’s"])
            out.append(w)
            if rng.random() < 0.2:
                out.append(rng.choice(PUNCT).replace("\\", "\\\\"))
            out.append(rng.choice(SPACES) if rng.random() < 0.3 else " ")
        return "".join(out).rstrip(" ") if rng.random() < 0.7 else "".join(out)
    if kind == 1:
        # Concatenate two fragments from different categories.
        a, b = rng.choice(FRAGMENTS), rng.choice(FRAGMENTS)
        return a + rng.choice(SPACES + ["", ""]) + b
    if kind == 2:
        # Digits in every shape.
        parts = []
        for _ in range(rng.randint(1, 6)):
            n = rng.randint(1, 25)
            digits = "".join(rng.choice("0123456789") for _ in range(n))
            sep = rng.choice([" ", ".", ",", "-", "/", ":", "", "x", "a", " $", "%", "e"])
            parts.append(digits + sep)
        return "".join(parts)
    if kind == 3:
        # Whitespace soup around words.
        out = []
        for _ in range(rng.randint(2, 8)):
            out.append(rng.choice(SPACES) * rng.randint(1, 4))
            out.append(rng.choice(WORDS_EN + ["!", "?!", "123", "中文", "🙂", "(", ")"]))
        return "".join(out)
    if kind == 4:
        # Random punctuation runs with a space before.
        n = rng.randint(1, 12)
        run = "".join(rng.choice(PUNCT) for _ in range(n)).replace("\\", "\\\\")
        return rng.choice(WORDS_EN) + rng.choice(["", " ", "  "]) + run + rng.choice(["", " ", "\\n"]) + rng.choice(WORDS_EN)
    if kind == 5:
        # A chat turn with special text.
        role = rng.choice(["user", "assistant", "system", "tool"])
        body = rng.choice(PROSE + CONTRACTIONS + SCRIPTS[:20])
        line = f"<|im_start|>{role}\\n{body}<|im_end|>"
        if rng.random() < 0.4:
            line += "\\n<|im_start|>assistant\\n"
        if rng.random() < 0.2:
            line += "<|endoftext|>"
        return line
    if kind == 6:
        # Random code points from interesting blocks.
        blocks = [(0x20, 0x7E), (0xA0, 0x17F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF),
                  (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x3040, 0x30FF), (0x4E00, 0x4EFF),
                  (0xAC00, 0xACFF), (0x1F300, 0x1F64F), (0x2000, 0x206F), (0x2190, 0x22FF),
                  (0x300, 0x36F), (0xFF00, 0xFFEF)]
        out = []
        for _ in range(rng.randint(1, 20)):
            lo, hi = rng.choice(blocks)
            cp = rng.randint(lo, hi)
            if cp == 0x5C:
                out.append("\\\\")
            elif cp < 0x20 or 0x7F <= cp < 0xA0 or 0x2028 <= cp <= 0x2029 or 0xD800 <= cp < 0xE000:
                out.append("\\u{%04X}" % cp)
            elif 0x2000 <= cp <= 0x206F:
                out.append("\\u{%04X}" % cp)
            else:
                out.append(chr(cp))
        return "".join(out)
    # kind == 7: a sentence with inline code and numbers.
    return (rng.choice(PROSE) + " " + rng.choice(CODE) + " " + rng.choice(NUMBERS))


def main():
    lines = []
    for group in (PROSE, CONTRACTIONS, SCRIPTS, EMOJI, CODE, NUMBERS, WHITESPACE, URLS, SPECIAL):
        lines.extend(group)
    while len(lines) < 1200:
        line = random_line()
        if line and line not in lines:
            lines.append(line)
    for line in lines:
        assert "\n" not in line and "\r" not in line, line
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "tests", "data", "tokenizer_corpus.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    print(f"wrote {len(lines)} lines to {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
