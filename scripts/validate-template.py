#!/usr/bin/env python3
"""Deep check of template.yaml: translate SAM to CloudFormation offline with aws-sam-translator,
then lint the result with cfn-lint. `cfn-lint` alone no longer expands SAM resources, so errors
inside them (architecture, runtime, event properties, !Ref typos) would go unseen.

    validate-template.py [TEMPLATE] [--calls FILE]

With `--calls` (written by `scripts/bench`: the DynamoDB operations each function binary made
against DynamoDB Local), every operation must be allowed by that function's policies: a call the
policy lacks is AccessDenied only once deployed.

The translated template is linted once per EgressMode, with the conditions evaluated: in every
mode but off the sender functions (stream consumers) that have a VpcConfig run in the VPC, no
other function ever does, and only functions that can run in it have the network-interface
permissions."""
import json
import os
import re
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
            if op not in allowed:
                problems.append(f"{name} ({binary}) calls dynamodb:{op}, which its policies do not allow")
    return problems


# What an operator passes for each optional part, so that every conditional resource is linted.
SAMPLE_PARAMETERS = {
    "Tracing": "Active",
    "GovDingFrontVpcId": "vpc-0123456789abcdef0",
    "GovDingFrontSubnetA": "subnet-0123456789abcdef0",
    "GovDingFrontSubnetB": "subnet-0123456789abcdef1",
    "AlarmTopicArn": "arn:aws-cn:sns:cn-north-1:123456789012:hookbridge-alarms",
    "EgressSubnetIds": "subnet-0123456789abcdef2,subnet-0123456789abcdef3",
    "EgressSecurityGroupIds": "sg-0123456789abcdef0",
}
EGRESS_MODES = ["off", "existing", "nat-gateway", "nat-instance"]
VPC_ROLE = "service-role/AWSLambdaVPCAccessExecutionRole"


def condition(expr, conditions: dict, params: dict) -> bool:
    """Evaluates a CloudFormation condition (Equals, Not, And, Or, Condition) for `params`."""
    if isinstance(expr, bool):
        return expr
    (op, args), = expr.items()
    if op == "Condition":
        return condition(conditions[args], conditions, params)
    if op == "Fn::Not":
        return not condition(args[0], conditions, params)
    if op == "Fn::And":
        return all(condition(a, conditions, params) for a in args)
    if op == "Fn::Or":
        return any(condition(a, conditions, params) for a in args)
    if op == "Fn::Equals":
        a, b = (params.get(v["Ref"], "") if isinstance(v, dict) else v for v in args)
        return a == b
    raise ValueError(f"condition {op} is not handled")


def resolve(node, conditions: dict, params: dict):
    """`node` with every Fn::If decided and AWS::NoValue dropped (None when nothing is left)."""
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, yes, no = node["Fn::If"]
            return resolve(yes if condition(conditions[name], conditions, params) else no, conditions, params)
        if node == {"Ref": "AWS::NoValue"}:
            return None
        out = {k: resolve(v, conditions, params) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(node, list):
        return [v for v in (resolve(v, conditions, params) for v in node) if v is not None]
    return node


def refs(node) -> set:
    found = set()
    if isinstance(node, dict):
        if "Ref" in node and isinstance(node["Ref"], str):
            found.add(node["Ref"])
        for v in node.values():
            found |= refs(v)
    elif isinstance(node, list):
        for v in node:
            found |= refs(v)
    return found


def check_egress(output: dict) -> list:
    """The static egress, mode by mode, in the translated template."""
    problems = []
    resources, conditions = output["Resources"], output.get("Conditions", {})
    senders = {
        r["Properties"]["FunctionName"]["Ref"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    functions = {n: r for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    for name, fn in functions.items():
        role = resources[fn["Properties"]["Role"]["Fn::GetAtt"][0]]
        eni = any(VPC_ROLE in json.dumps(a) for a in role["Properties"].get("ManagedPolicyArns", []))
        eni = eni or "ec2:CreateNetworkInterface" in json.dumps(role["Properties"].get("Policies", []))
        if eni != ("VpcConfig" in fn["Properties"]):
            problems.append(f"{name}: network-interface permissions {'without' if eni else 'missing for'} a VpcConfig")
    for mode in EGRESS_MODES:
        params = {**SAMPLE_PARAMETERS, "EgressMode": mode}
        present = {
            n for n, r in resources.items()
            if "Condition" not in r or condition(conditions[r["Condition"]], conditions, params)
        }
        for name, fn in functions.items():
            vpc = resolve(fn["Properties"].get("VpcConfig"), conditions, params)
            # Which senders need it is the connectors' to say (tests/tests/egress.rs checks it).
            wanted = name in senders and "VpcConfig" in fn["Properties"] and mode != "off"
            if bool(vpc) != wanted:
                problems.append(f"EgressMode {mode}: {name} {'runs' if vpc else 'does not run'} in the VPC")
            missing = refs(vpc) - present - set(params) - set(output.get("Parameters", {}))
            if missing:
                problems.append(f"EgressMode {mode}: {name} refers to {sorted(missing)}, which this mode does not create")
        own = mode in ("nat-gateway", "nat-instance")
        for needed in ["EgressIp", "EgressDynamoDbEndpoint"]:
            if (needed in present) != own:
                problems.append(f"EgressMode {mode}: {needed} {'missing' if own else 'created'}")
        ip_output = output.get("Outputs", {}).get("EgressIp")
        shown = bool(ip_output) and condition(conditions[ip_output["Condition"]], conditions, params)
        if shown != own:
            problems.append(f"EgressMode {mode}: the EgressIp output is {'missing' if own else 'shown'}")
    return problems


# A metric-math alarm reads at most this many metrics; CloudFormation accepts more and the
# deployment fails.
MAX_ALARM_METRICS = 10


def check_alarms(output: dict) -> list:
    """Every function's Errors and Throttles, and every stream consumer's IteratorAge, are in
    an alarm (with full Monitoring), and no alarm reads more metrics than CloudWatch allows."""
    problems = []
    resources = output["Resources"]
    watched = set()
    for name, r in resources.items():
        if r["Type"] != "AWS::CloudWatch::Alarm":
            continue
        stats = [m["MetricStat"]["Metric"] for m in r["Properties"].get("Metrics", []) if "MetricStat" in m]
        if len(stats) > MAX_ALARM_METRICS:
            problems.append(f"{name} reads {len(stats)} metrics; CloudWatch allows {MAX_ALARM_METRICS}: split it")
        for metric in stats:
            for d in metric.get("Dimensions", []):
                if d.get("Name") == "FunctionName" and isinstance(d.get("Value"), dict):
                    watched.add((d["Value"].get("Ref"), metric["MetricName"]))
    consumers = {
        r["Properties"]["FunctionName"]["Ref"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    for name, r in resources.items():
        if r["Type"] != "AWS::Lambda::Function":
            continue
        wanted = ["Errors", "Throttles"] + (["IteratorAge"] if name in consumers else [])
        for metric in wanted:
            if (name, metric) not in watched:
                problems.append(f"{name}: no alarm watches its {metric}")
    return problems


def check_dashboard(template: dict) -> list:
    """The dashboard (full Monitoring's) has a body that is JSON once substituted, and it shows
    every alarm such a stack has (those of one EgressMode, the NAT instance's, cannot be named
    in it unconditionally)."""
    resources = template["Resources"]
    body, variables = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    try:
        widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
    except (ValueError, KeyError) as e:
        return [f"Dashboard: its body is not JSON once substituted: {e}"]
    shown = set(re.findall(r"\$\{(\w+)\.Arn\}", body))
    alarms = {
        n
        for n, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r.get("Condition", "FullMonitoring") == "FullMonitoring"
    }
    missing = sorted(alarms - shown)
    problems = [f"Dashboard: alarm {a} is not on it" for a in missing]
    if not any(w["type"] == "alarm" for w in widgets):
        problems.append("Dashboard: no alarm widget")
    return problems


def lint(output: dict, mode: str) -> bool:
    """cfn-lint on the translated template, its parameters defaulting to `mode`'s values."""
    output = json.loads(json.dumps(output))
    for key, value in {**SAMPLE_PARAMETERS, "EgressMode": mode}.items():
        if key in output.get("Parameters", {}):
            output["Parameters"][key]["Default"] = value
    with tempfile.NamedTemporaryFile("w", suffix=f"-{mode}.json", delete=False) as f:
        json.dump(output, f, indent=1)
    result = subprocess.run(["cfn-lint", "--regions", "cn-north-1", "us-east-1", "--", f.name])
    if result.returncode != 0:
        print(f"cfn-lint found problems in the translated template, EgressMode {mode} ({f.name})", file=sys.stderr)
    return result.returncode == 0


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
        **SAMPLE_PARAMETERS,
    }
    try:
        output = transform(template, parameters, NoManagedPolicies())
    except InvalidDocumentException as e:
        for cause in e.causes:
            print(f"SAM: {cause.message}", file=sys.stderr)
        return 1
    problems = check_egress(output)
    for p in problems:
        print(f"egress: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"egress: in each of {', '.join(EGRESS_MODES)} only senders run in the VPC, and only when it is on")
    problems = check_alarms(output)
    for p in problems:
        print(f"alarms: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"alarms: every function's errors and throttles, every sender's iterator age, at most {MAX_ALARM_METRICS} metrics an alarm")
    problems = check_dashboard(template)
    for p in problems:
        print(f"dashboard: {p}", file=sys.stderr)
    if problems:
        return 1
    print("dashboard: its body is JSON and it shows every alarm")
    if not all([lint(output, mode) for mode in EGRESS_MODES]):
        return 1
    print(f"template OK: {len(output['Resources'])} CloudFormation resources after the SAM transform, linted in every EgressMode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
