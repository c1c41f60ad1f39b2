"""Check every JSON-RPC answer against the OpenRPC document (a test-suite harness, off by default).

Rules this module keeps:
1. Off unless the environment variable GMCHAIN_VALIDATE_RPC names a file: a production node never
   imports `jsonschema` (a dev dependency) and pays nothing but one `is None` test per reply.
2. When on, every reply object the server sends is checked: the JSON-RPC 2.0 envelope (exactly
   `jsonrpc`, `id` and one of `result`/`error`); a result against its method's `result.schema`;
   an error object's members (`code`, `message`, `data`?) and that its code is one the method
   declares in `errors` (a request that names no known method: one of the document's errors);
   each subscription notification against the schema of its kind in the `gm_subscribe` method's
   `x-notifications` member; a `gm_call` result, beyond the generic schema, against the exact
   schema of that contract's query in `gm_call`'s `x-results` member (when it names one).
3. A violation never changes the reply (the harness observes, it does not repair): it is appended
   as one JSON line to that file, which tests/conftest.py reads at the end of the session and
   fails the run on. Appends are single `write` calls on an O_APPEND file, so the processes of a
   test session (in-process servers, node subprocesses) can share it.
4. Validators are compiled once per method and kept (the document does not change at run time),
   with every non-recursive `$ref` to a component inlined first: resolving a reference costs more
   than checking what it names, and a full block repeats the same few references per member.

Sources: OpenRPC 1.2.6 (method `result`, `errors`, specification extensions `x-`), JSON Schema
2020-12 (the dialect of docs/openrpc.json), JSON-RPC 2.0 §5 (response object).
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from gmchain.node.rpcspec import load_openrpc

__all__ = ["ENV_VAR", "ReplyValidator", "from_env"]

ENV_VAR = "GMCHAIN_VALIDATE_RPC"

_ERROR_OBJECT = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}},
    "additionalProperties": False,
}
_ENVELOPE_MEMBERS = ({"jsonrpc", "id", "result"}, {"jsonrpc", "id", "error"})


class ReplyValidator:
    """Validates replies against an OpenRPC document; appends violations to `path` (rule 3)."""

    def __init__(self, path: str, doc: dict[str, Any] | None = None) -> None:
        import jsonschema  # a dev dependency: only imported when validation is on (rule 1)

        self._jsonschema = jsonschema
        self._path = path
        self._doc = doc if doc is not None else load_openrpc()
        self._components = self._doc.get("components", {})
        self._methods = {m["name"]: m for m in self._doc["methods"]}
        self._codes = {e["code"] for e in self._components.get("errors", {}).values()}
        self._validators: dict[str, Any] = {}

    # --- checks ---

    def check_reply(
        self, method: str | None, reply: dict[str, Any], params: dict[str, Any] | None = None
    ) -> None:
        """One response object of `method` (None: the request named no known method); `params`
        are the parsed params by name (`gm_call`'s say which query's exact schema applies)."""
        if set(reply) not in _ENVELOPE_MEMBERS or reply.get("jsonrpc") != "2.0":
            self._violation(method, "envelope", f"members {sorted(reply)}", reply)
            return
        if "error" in reply:
            self.check_error(method, reply["error"])
        elif method is not None:
            spec = self._methods.get(method)
            if spec is None:
                self._violation(method, "result", "method not in the OpenRPC document", reply)
                return
            result = reply["result"]
            valid = self._check(f"result:{method}", spec["result"]["schema"], result, method)
            if valid and method == "gm_call" and params is not None:
                self._check_query(spec, params, result)

    def check_error(self, method: str | None, error: Any) -> None:
        """An error object: its members, and a code the method declares (rule 2)."""
        if not self._check("error-object", _ERROR_OBJECT, error, method):
            return
        allowed = self._codes if method is None else self._method_codes(method)
        if error["code"] not in allowed:
            why = f"error code {error['code']} is not among the errors the method declares"
            self._violation(method, "error", why, error)

    def check_notification(self, kind: str, result: Any) -> None:
        """One `gm_subscription` notification's `result` for a subscription of `kind`."""
        schemas = self._methods.get("gm_subscribe", {}).get("x-notifications", {})
        schema = schemas.get(kind)
        if schema is None:
            self._violation("gm_subscribe", "notification", f"no schema for {kind!r}", result)
            return
        self._check(f"notification:{kind}", schema, result, "gm_subscribe")

    # --- helpers ---

    def _check_query(self, spec: dict[str, Any], params: dict[str, Any], result: Any) -> None:
        query = f"{params.get('contract')}.{params.get('method')}"
        schema = spec.get("x-results", {}).get(query)
        if schema is None:
            return  # a contract the document does not describe (e.g. a test's own)
        value = result["value"] if params.get("withHeight") else result
        self._check(f"x-results:{query}", schema, value, "gm_call")

    def _method_codes(self, method: str) -> set[int]:
        spec = self._methods.get(method)
        if spec is None:
            return self._codes
        errors = self._components.get("errors", {})
        return {errors[r["$ref"].rsplit("/", 1)[1]]["code"] for r in spec.get("errors", ())}

    def _check(self, key: str, schema: dict[str, Any], instance: Any, method: str | None) -> bool:
        validator = self._validators.get(key)
        if validator is None:
            # The components travel with each schema so that the refs left (recursive ones) resolve.
            root = {**_inline(schema, self._components, ()), "components": self._components}
            cls = self._jsonschema.Draft202012Validator
            cls.check_schema(root)
            validator = self._validators[key] = cls(root)
        errors = list(validator.iter_errors(instance))
        if not errors:
            return True
        best = self._jsonschema.exceptions.best_match(errors)
        where = "/".join(str(p) for p in best.absolute_path)
        self._violation(method, key, f"at /{where}: {best.message}", instance)
        return False

    def _violation(self, method: str | None, check: str, message: str, instance: Any) -> None:
        line = {
            "pid": os.getpid(),
            "method": method,
            "check": check,
            "message": message[:2000],
            "instance": json.dumps(instance, default=repr)[:2000],
        }
        data = (json.dumps(line) + "\n").encode()
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


_ANNOTATIONS = frozenset({"$ref", "description", "default"})
_PREFIX = "#/components/schemas/"


def _inline(schema: Any, components: dict[str, Any], stack: tuple[str, ...]) -> Any:
    """`schema` with each `$ref` to a component replaced by that component (rule 4), except a
    reference to a component being inlined already (recursive schemas such as Value)."""
    if isinstance(schema, list):
        return [_inline(v, components, stack) for v in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_PREFIX) and set(schema) <= _ANNOTATIONS:
        name = ref[len(_PREFIX) :]
        target = components.get("schemas", {}).get(name)
        if isinstance(target, dict) and name not in stack:
            inlined = _inline(target, components, (*stack, name))
            notes = {k: v for k, v in schema.items() if k != "$ref"}
            return {**inlined, **notes}
        return schema
    return {k: _inline(v, components, stack) for k, v in schema.items()}


@cache
def from_env() -> ReplyValidator | None:
    """The validator the environment asks for (rule 1), one per process."""
    path = os.environ.get(ENV_VAR)
    return ReplyValidator(path) if path else None
