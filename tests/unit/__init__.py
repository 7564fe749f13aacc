# A package, so that a test module here may share its name with its counterpart in
# tests/integration/ (unit/test_ingress.py and integration/test_ingress.py): pytest
# imports these as unit.test_<name>.
