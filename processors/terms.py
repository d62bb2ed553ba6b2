"""The default English term calendar, 2024/25 to 2027/28, as data: inclusive ranges of term time."""

from __future__ import annotations

from datetime import date

#: An inclusive range of term time: (first day, last day). Weekends and bank holidays inside a range are
#: removed by the calendar, so a range may start or end on one.
TermRange = tuple[date, date]

#: School years the default calendar covers, as "YYYY/YY".
DEFAULT_SCHOOL_YEARS: tuple[str, ...] = ("2024/25", "2025/26", "2026/27", "2027/28")

# Typical dates for an English LA-maintained school: each term is split at its half-term, so every gap
# between consecutive ranges is a break (half-term, Christmas, Easter, summer). The Easter break is the
# fortnight around Easter Sunday; where Good Friday falls just before it, the bank holiday closes that day.
DEFAULT_TERMS: tuple[TermRange, ...] = (
    # 2024/25 (Easter Sunday 20 April 2025)
    (date(2024, 9, 2), date(2024, 10, 25)),
    (date(2024, 11, 4), date(2024, 12, 20)),
    (date(2025, 1, 6), date(2025, 2, 14)),
    (date(2025, 2, 24), date(2025, 4, 11)),
    (date(2025, 4, 28), date(2025, 5, 23)),
    (date(2025, 6, 2), date(2025, 7, 22)),
    # 2025/26 (Easter Sunday 5 April 2026)
    (date(2025, 9, 3), date(2025, 10, 24)),
    (date(2025, 11, 3), date(2025, 12, 19)),
    (date(2026, 1, 5), date(2026, 2, 13)),
    (date(2026, 2, 23), date(2026, 3, 27)),
    (date(2026, 4, 13), date(2026, 5, 22)),
    (date(2026, 6, 1), date(2026, 7, 22)),
    # 2026/27 (Easter Sunday 28 March 2027)
    (date(2026, 9, 2), date(2026, 10, 23)),
    (date(2026, 11, 2), date(2026, 12, 18)),
    (date(2027, 1, 4), date(2027, 2, 12)),
    (date(2027, 2, 22), date(2027, 3, 26)),
    (date(2027, 4, 12), date(2027, 5, 28)),
    (date(2027, 6, 7), date(2027, 7, 21)),
    # 2027/28 (Easter Sunday 16 April 2028)
    (date(2027, 9, 1), date(2027, 10, 22)),
    (date(2027, 11, 1), date(2027, 12, 17)),
    (date(2028, 1, 4), date(2028, 2, 11)),
    (date(2028, 2, 21), date(2028, 4, 7)),
    (date(2028, 4, 24), date(2028, 5, 26)),
    (date(2028, 6, 5), date(2028, 7, 21)),
)

#: Whole-school closure days of the default calendar (INSET days are left to each LA's configuration).
DEFAULT_CLOSURES: tuple[date, ...] = ()
