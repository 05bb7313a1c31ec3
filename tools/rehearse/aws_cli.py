"""The administrator's `aws` inside the rehearsal: the one AWS CLI command the README's steps run.

`aws secretsmanager put-secret-value --secret-id ID --secret-string VALUE` puts the value with the
administrator's credentials into the rehearsal's AWS (`AWS_ENDPOINT_URL`); any other command says that
the rehearsal does not model it, so a README step it cannot run fails loudly instead of passing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import boto3
from botocore.exceptions import ClientError


def main(argv: Sequence[str]) -> int:
    if list(argv[:2]) != ["secretsmanager", "put-secret-value"]:
        print(
            f"aws {' '.join(argv[:2])}: the rehearsal models only `aws secretsmanager put-secret-value`",
            file=sys.stderr,
        )
        return 2
    parser = argparse.ArgumentParser(prog="aws secretsmanager put-secret-value")
    parser.add_argument("--secret-id", required=True)
    parser.add_argument("--secret-string", required=True)
    args = parser.parse_args(argv[2:])
    try:
        answer = boto3.client("secretsmanager").put_secret_value(
            SecretId=args.secret_id, SecretString=args.secret_string
        )
    except ClientError as error:
        print(f"An error occurred ({error.response['Error']['Code']}): {error}", file=sys.stderr)
        return 254
    print(f'{{"ARN": "{answer["ARN"]}", "Name": "{answer["Name"]}", "VersionId": "{answer["VersionId"]}"}}')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
