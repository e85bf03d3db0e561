"""Per-group kernels: the rules that storage (building partial aggregates) and the query service
(merging them) must apply identically, in one place.

- `arrays`: per-group arrays that grow as groups appear, and functions evaluated per key.
- `computed_names`: how a plan names its computed columns (`$0`, `$1`, …).
- `numbering`: numbers for group-by key values and for combinations of them, in order of first
  appearance, vectorized (NaN is one value, -0.0 is 0.0, 1 and 1.0 are different values).
- `sums`: exact integer sums (int64 until one could overflow, Python ints from then on) and
  exactly rounded float sums.
- `extremes`: MIN and MAX over mixed types (numbers beat strings beat bools; ints and floats
  compared exactly, an int wins a tie; NaN never beats a number).
- `moments`: count, mean and squared differences from the mean per group, for STDDEV, and
  Chan et al.'s merge of two such states.
- `calendar`: date_trunc and time_bucket on a time zone's calendar, as DuckDB computes them
  (`zones`: offsets and wall times; `daybuckets`: ICU's day arithmetic).
- `tzdb`: the zones of the tzdata package by name, and the check of a name; the client uses it
  too, so it imports no numpy (nor does this package's `__init__`).
- `text`: the string functions of computed columns, regexp_matches on RE2 as DuckDB's.

Value types are flakehouse.events' (`INT`, `FLOAT`, `STRING`, `BOOL`, 0 for null); this
library depends on numpy, the tzdata package (for zones) and google-re2 only, so the types are
passed in as plain ints.
"""
