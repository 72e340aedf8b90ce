"""Run inside a lab node: send the HTTP requests described on stdin (a JSON
list) and print the answers (a JSON list), so a test can speak to a
join-server from another node's network namespace."""

import base64
import hashlib
import hmac
import http.client
import json
import sys


def main() -> None:
    answers = []
    for spec in json.load(sys.stdin):
        # A body given as a document speaks this version's protocol, as wgmesh's own client does.
        document = spec.get("body", {})
        if isinstance(document, dict):
            document = {"protocol": spec.get("protocol", 2), **document}
        body = base64.b64decode(spec["raw"]) if "raw" in spec else json.dumps(document).encode()
        headers = {"Content-Type": "application/json", **spec.get("headers", {})}
        if "sign_with" in spec:  # the link's signing key, in hex
            message = f"{spec['method']} {spec['path']}\n".encode() + body
            headers["X-Wgmesh-Signature"] = hmac.new(bytes.fromhex(spec["sign_with"]), message,
                                                     hashlib.sha256).hexdigest()
        source = (spec["source"], 0) if "source" in spec else None
        connection = http.client.HTTPConnection(spec["host"], spec.get("port", 8080), timeout=20,
                                                source_address=source)
        try:
            connection.request(spec["method"], spec["path"], body=body, headers=headers)
            response = connection.getresponse()
            answers.append({"status": response.status, "body": response.read().decode(errors="replace")})
        except OSError as error:
            answers.append({"status": 0, "body": str(error)})
        finally:
            connection.close()
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
