#!/usr/bin/env python3
"""The JSON Schema editors use for hookbridge.toml (`hookbridge config schema`) against the
configs the repository ships: each must validate, and a key the loader refuses must be refused
by the schema too (an unknown key; a connector's route option on another connector's route).

    check-schema.py HOOKBRIDGE_BINARY"""
import glob
import json
import subprocess
import sys
import tomllib

import jsonschema


def main() -> int:
    schema = json.loads(subprocess.run([sys.argv[1], "config", "schema"], check=True, capture_output=True).stdout)
    validator = jsonschema.Draft202012Validator(schema)
    failed = False
    for path in sorted(glob.glob("config/*.toml") + glob.glob("config/stack/*.toml")):
        with open(path, "rb") as f:
            errors = [e.message for e in validator.iter_errors(tomllib.load(f))]
        print(f"{path}: {'valid' if not errors else errors}")
        failed |= bool(errors)
    typo = {"server": {"listn": "127.0.0.1:3000"}}
    if not list(validator.iter_errors(typo)):
        print("the schema takes an unknown key the loader refuses")
        failed = True
    # A connector's route options, on its routes only (as the connector reads them).
    route = {"source": "hap", "to_all_user": True}
    if list(validator.iter_errors({"routes": [dict(route, connector="dingtalk")]})):
        print("the schema refuses a DingTalk route option on a DingTalk route")
        failed = True
    if not list(validator.iter_errors({"routes": [dict(route, connector="zentao")]})):
        print("the schema takes a DingTalk route option on a ZenTao route, which the loader refuses")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
