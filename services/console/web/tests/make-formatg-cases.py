"""Writes formatg-cases.json: [repr(x), f"{x:.6g}"] pairs that format.test.js checks formatG
against (Python is the reference: the CLI's table prints floats this way)."""

import json
import random
import struct
from pathlib import Path

random.seed(3)
# Hand-picked: the brief's examples, exact ties (1234565), carries (999999.5), extremes.
SPECIAL = (
    "0.0 -0.0 1.0 2.0 -1.5 1e-5 0.0001 0.00012345678 123456789.0 123456.0 1234567.0 1234565.0"
    " 1234575.0 -1234565.0 999999.5 9999995.0 0.5 1e16 1e-300 5e-324 1.7976931348623157e308"
    " 2.5e-05 100000.0 1000000.0 0.000099999996 3.14159265358979 -2.718281828 12.5 0.125 1e21"
    " 1e22 123.456 0.06666666666666667 0.133333 1.0000005 2.0000025 8.0000045 16.000005"
    " 33.3333335 1e100 nan inf -inf"
)
values = [0.1 + 0.2, *(float(text) for text in SPECIAL.split())]
for _ in range(150):  # any double
    x = struct.unpack("d", struct.pack("Q", random.getrandbits(64)))[0]
    if x == x and abs(x) != float("inf"):
        values.append(x)
values += [round(random.uniform(-1e7, 1e7), random.randint(0, 6)) for _ in range(150)]
values += [random.randint(0, 10**9) / 8 for _ in range(100)]  # exact binary fractions: ties
values += [random.randint(0, 10**7) + 0.5 for _ in range(50)]  # 7 digits and a half: ties
cases = [[repr(x), f"{x:.6g}"] for x in values]
text = "[\n" + ",\n".join(json.dumps(case) for case in cases) + "\n]\n"
Path(__file__).with_name("formatg-cases.json").write_text(text)
