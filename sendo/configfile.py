"""Reading a YAML file an operator wrote (an audit policy, the encryption configuration):
one error type whose message says which file and what is wrong with it."""
from __future__ import annotations

from typing import Any

import yaml


class ConfigFileError(ValueError):
    pass


def load_yaml_file(path: str, what: str) -> Any:
    """The document in `path`; `what` names the file in errors ("the audit policy")."""
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise ConfigFileError(f"cannot read {what} {path}: {e.strerror or e}")
    except yaml.YAMLError as e:
        raise ConfigFileError(f"{what} {path} is not valid YAML: {e}")
