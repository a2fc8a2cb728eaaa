#!/usr/bin/env python3
"""Deep check of template.yaml: translate SAM to CloudFormation offline with aws-sam-translator,
then lint the result with cfn-lint. `cfn-lint` alone no longer expands SAM resources, so errors
inside them (architecture, runtime, event properties, !Ref typos) would go unseen.

    validate-template.py [TEMPLATE] [--calls FILE]

With `--calls` (written by `scripts/bench`: the DynamoDB operations each function binary made
against DynamoDB Local), every operation must be allowed by that function's policies: a call the
policy lacks is AccessDenied only once deployed."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    def load(self):
        return {}


# DynamoDB authorizes a transaction per item, by the item's own action.
AUTHORIZED_AS = {"TransactWriteItems": "PutItem"}


def dynamodb_actions(node) -> set:
    """Every dynamodb:* action named anywhere under a function's Policies (conditions included)."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Action":
                actions = value if isinstance(value, list) else [value]
                found |= {a.split(":", 1)[1] for a in actions if isinstance(a, str) and a.startswith("dynamodb:")}
            else:
                found |= dynamodb_actions(value)
    elif isinstance(node, list):
        for item in node:
            found |= dynamodb_actions(item)
    return found


def check_calls(template: dict, calls_file: Path) -> list:
    calls = json.loads(calls_file.read_text())
    problems = []
    functions = {
        r.get("Metadata", {}).get("BuildProperties", {}).get("Binary"): (name, r)
        for name, r in template.get("Resources", {}).items()
        if r.get("Type") == "AWS::Serverless::Function"
    }
    for binary, ops in calls.items():
        if binary not in functions:
            problems.append(f"{binary}: no function in the template builds this binary")
            continue
        name, resource = functions[binary]
        allowed = dynamodb_actions(resource.get("Properties", {}).get("Policies", []))
        for op in ops:
            if AUTHORIZED_AS.get(op, op) not in allowed:
                problems.append(f"{name} ({binary}) calls dynamodb:{op}, which its policies do not allow")
    return problems


def main() -> int:
    # The translator looks the region up through boto even when it is given as a parameter.
    os.environ.setdefault("AWS_DEFAULT_REGION", "cn-north-1")
    args = sys.argv[1:]
    calls_file = None
    if "--calls" in args:
        i = args.index("--calls")
        calls_file = Path(args[i + 1])
        del args[i : i + 2]
    path = Path(args[0] if args else "template.yaml")
    template = yaml_parse(path.read_text())
    if calls_file:
        problems = check_calls(template, calls_file)
        for p in problems:
            print(f"IAM: {p}", file=sys.stderr)
        if problems:
            return 1
        print(f"IAM: every DynamoDB call in {calls_file} is allowed by its function's policies")
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = "s3://hookbridge-artifacts/placeholder.zip"
    parameters = {
        "AWS::Region": "cn-north-1",
        "AWS::Partition": "aws-cn",
        "AWS::AccountId": "123456789012",
        # Every optional resource on, so the conditional ones are linted too.
        "Tracing": "Active",
        "GovDingFrontVpcId": "vpc-0123456789abcdef0",
        "GovDingFrontSubnetA": "subnet-0123456789abcdef0",
        "GovDingFrontSubnetB": "subnet-0123456789abcdef1",
        "AlarmTopicArn": "arn:aws-cn:sns:cn-north-1:123456789012:hookbridge-alarms",
    }
    try:
        output = transform(template, parameters, NoManagedPolicies())
    except InvalidDocumentException as e:
        for cause in e.causes:
            print(f"SAM: {cause.message}", file=sys.stderr)
        return 1
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(output, f, indent=1)
    result = subprocess.run(["cfn-lint", "--regions", "cn-north-1", "us-east-1", "--", f.name])
    if result.returncode != 0:
        print(f"cfn-lint found problems in the translated template ({f.name})", file=sys.stderr)
        return 1
    print(f"template OK: {len(output['Resources'])} CloudFormation resources after the SAM transform")
    return 0


if __name__ == "__main__":
    sys.exit(main())
