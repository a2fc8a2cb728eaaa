#!/usr/bin/env python3
"""Prints the config TOML that the functions get from the README's `sam deploy` command
(with `Name=Value` arguments overriding its parameters, to try other settings).

The command is read from README.md, its --parameter-overrides parsed by SAM CLI's own parser
(so quoting and spaces are treated exactly as `sam deploy` treats them), and template.yaml's
HOOKBRIDGE_CONFIG evaluated with those values and the parameters' defaults, as CloudFormation
would (Fn::Sub, Fn::If and the conditions the template uses). Each value is also checked against
its parameter's AllowedPattern. Exits non-zero, saying why, when any of that fails."""
import re
import shlex
import sys
from pathlib import Path

from samcli.cli.types import CfnParameterOverridesType
from samtranslator.yaml_helper import yaml_parse


def deploy_command(readme: str) -> str:
    lines = readme.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("sam deploy"))
    command = []
    for line in lines[start:]:
        if line.lstrip().startswith("#"):
            continue
        command.append(line.rstrip().removesuffix("\\"))
        if not line.rstrip().endswith("\\"):
            break
    return " ".join(command)


def overrides(command: str) -> dict:
    argv = shlex.split(command)
    values = []
    taking = False
    for arg in argv:
        if arg == "--parameter-overrides":
            taking = True
        elif arg.startswith("--"):
            taking = False
        elif taking:
            values.append(arg)
    return CfnParameterOverridesType().convert(values, None, None)


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    template = yaml_parse((root / "template.yaml").read_text())
    params = template["Parameters"]
    given = overrides(deploy_command((root / "README.md").read_text()))
    given.update(arg.split("=", 1) for arg in sys.argv[1:])
    unknown = sorted(set(given) - set(params))
    if unknown:
        print(f"the deploy line names parameters the template lacks: {unknown}", file=sys.stderr)
        return 1
    values = {k: str(p.get("Default", "")) for k, p in params.items()}
    values.update(given)
    for name, p in params.items():
        if name in given and "AllowedPattern" in p and not re.fullmatch(p["AllowedPattern"], values[name]):
            print(f"{name}={values[name]!r} does not match its AllowedPattern", file=sys.stderr)
            return 1
        if "AllowedValues" in p and values[name] not in [str(v) for v in p["AllowedValues"]]:
            print(f"{name}={values[name]!r} is not one of {p['AllowedValues']}", file=sys.stderr)
            return 1

    conditions = template.get("Conditions", {})

    def condition(name):
        return evaluate(conditions[name])

    def evaluate(node):
        if isinstance(node, dict) and len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                return values[arg]
            if fn == "Condition":
                return condition(arg)
            if fn == "Fn::Equals":
                return evaluate(arg[0]) == evaluate(arg[1])
            if fn == "Fn::Not":
                return not evaluate(arg[0])
            if fn == "Fn::And":
                return all(evaluate(a) for a in arg)
            if fn == "Fn::Split":
                return evaluate(arg[1]).split(arg[0])
            if fn == "Fn::Join":
                return arg[0].join(evaluate(arg[1]))
            if fn == "Fn::If":
                return evaluate(arg[1] if condition(arg[0]) else arg[2])
            if fn == "Fn::Sub":
                text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                scope = dict(values)
                scope.update({k: evaluate(v) for k, v in local.items()})
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(scope[m.group(1)]), text)
            raise SystemExit(f"deploy-config.py does not evaluate {fn}")
        return node

    env = template["Globals"]["Function"]["Environment"]["Variables"]
    print(evaluate(env["HOOKBRIDGE_CONFIG"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
