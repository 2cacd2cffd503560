"""Unit tests of the report package (python3 -m unittest discover -s bench/report/tests -t bench;
ctest runs them as report_unit_tests)."""
