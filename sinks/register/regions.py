"""England's nine regions (the DfE's government office regions) by 3-digit LA code, for regional enquiries."""

from __future__ import annotations

from enum import StrEnum


class Region(StrEnum):
    NORTH_EAST = "North East"
    NORTH_WEST = "North West"
    YORKSHIRE_AND_THE_HUMBER = "Yorkshire and the Humber"
    EAST_MIDLANDS = "East Midlands"
    WEST_MIDLANDS = "West Midlands"
    EAST_OF_ENGLAND = "East of England"
    LONDON = "London"
    SOUTH_EAST = "South East"
    SOUTH_WEST = "South West"


def _codes(*spans: tuple[int, int] | int) -> list[str]:
    codes: list[str] = []
    for span in spans:
        first, last = span if isinstance(span, tuple) else (span, span)
        codes.extend(f"{code:03d}" for code in range(first, last + 1))
    return codes


#: Each current LA's region, as the DfE's LA tables place them; former LAs (abolished by reorganisations)
#: keep their region, so a case an old code holds still belongs somewhere.
_MEMBERS: dict[Region, list[str]] = {
    Region.NORTH_EAST: _codes((390, 394), 805, 806, 807, 808, 840, 841, 929),
    Region.NORTH_WEST: _codes(
        (340, 344), (350, 359), 875, 876, 877, 888, 889, 890, 895, 896, 909, 942, 943
    ),
    Region.YORKSHIRE_AND_THE_HUMBER: _codes((370, 373), (380, 384), 810, 811, 812, 813, 815, 816),
    Region.EAST_MIDLANDS: _codes(830, 831, 855, 856, 857, 891, 892, 925, 928, 940, 941),
    Region.WEST_MIDLANDS: _codes((330, 336), 860, 861, 884, 885, 893, 894, 937),
    Region.EAST_OF_ENGLAND: _codes(820, 821, 822, 823, 873, 874, 881, 882, 883, 919, 926, 935),
    Region.LONDON: _codes((201, 213), (301, 320)),
    Region.SOUTH_EAST: _codes(
        825, 826, 845, 846, 850, 851, 852, 867, 868, 869, 870, 871, 872, 886, 887, 921, 931, 936, 938
    ),
    Region.SOUTH_WEST: _codes(
        420, 800, 801, 802, 803, 835, 836, 837, 838, 839, 865, 866, 878, 879, 880, 908, 916, 933
    ),
}
REGION_OF_LA: dict[str, Region] = {code: region for region, codes in _MEMBERS.items() for code in codes}


def region_of(la_code: str) -> Region | None:
    return REGION_OF_LA.get(la_code)


def las_of_region(region: Region) -> frozenset[str]:
    return frozenset(_MEMBERS[region])


def same_region_las(la_code: str) -> frozenset[str]:
    """The LAs an officer of `la_code` may ask about: those of its region; none for a code of no region."""
    region = region_of(la_code)
    return frozenset() if region is None else las_of_region(region)
