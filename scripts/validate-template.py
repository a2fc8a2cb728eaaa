#!/usr/bin/env python3
"""Deep check of template.yaml: translate SAM to CloudFormation offline with aws-sam-translator,
then lint the result with cfn-lint. `cfn-lint` alone no longer expands SAM resources, so errors
inside them (architecture, runtime, event properties, !Ref typos) would go unseen."""
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


def main() -> int:
    # The translator looks the region up through boto even when it is given as a parameter.
    os.environ.setdefault("AWS_DEFAULT_REGION", "cn-north-1")
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "template.yaml")
    template = yaml_parse(path.read_text())
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            props["CodeUri"] = "s3://hookbridge-artifacts/placeholder.zip"
    parameters = {
        "AWS::Region": "cn-north-1",
        "AWS::Partition": "aws-cn",
        "AWS::AccountId": "123456789012",
        "HapTokenSecretArn": "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:hap-AbCdEf",
        "DingTalkSecretArn": "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:dt-AbCdEf",
        "DingTalkAppKey": "dingexample",
        "DingTalkAgentId": "1185599675",
        # Every optional feature on, so the conditional resources are linted too.
        "DmsSignatureSecretArn": "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:dms-AbCdEf",
        "ZenTaoBaseUrl": "https://zentao.example.com",
        "ZenTaoKeySecretArn": "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:zt-AbCdEf",
        "GovDingPathTokenSecretArn": "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:gd-AbCdEf",
        "GovDingOperators": "ops1,ops2",
        "GovDingAppKey": "hookbridge-app",
        "GovDingSecretArn": "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:gds-AbCdEf",
        "GovDingTenantId": "196729",
        "GovDingFrontVpcId": "vpc-0123456789abcdef0",
        "GovDingFrontSubnetA": "subnet-0123456789abcdef0",
        "GovDingFrontSubnetB": "subnet-0123456789abcdef1",
        "RobotWebhookSecretArn": "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:robot-AbCdEf",
        "RobotSignSecretArn": "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:robotsign-AbCdEf",
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
