"""A third-party action package: adds ``hello.greet`` and ``hello.login`` through the
``runbook.actions`` entry point."""
from __future__ import annotations

from engine.actions.base import Action, Context, Result


class Greet(Action):
    """Greet someone by name (a plug-in example)."""

    name = "hello.greet"
    mutates = False
    args_schema = {
        "type": "object", "additionalProperties": False, "required": ["who"],
        "properties": {
            "who": {"type": "string", "description": "Whom to greet."},
            "punctuation": {"type": "string", "description": "Ends the greeting (default !)."},
        },
    }

    def plan(self, args: dict, ctx: Context) -> str:
        return f"greet {args['who']}"

    def run(self, args: dict, ctx: Context) -> Result:
        greeting = f"Hello, {args['who']}{args.get('punctuation', '!')}"
        return Result(ok=True, data={"greeting": greeting}, message=greeting)


class Login(Action):
    """Log in somewhere with a password (a plug-in with a sensitive argument)."""

    name = "hello.login"
    mutates = True
    sensitive_args = ("password",)
    args_schema = {
        "type": "object", "additionalProperties": False, "required": ["user", "password"],
        "properties": {"user": {"type": "string"}, "password": {"type": "string"}},
    }

    def plan(self, args: dict, ctx: Context) -> str:
        return f"log in as {args['user']}"

    def run(self, args: dict, ctx: Context) -> Result:
        return Result(ok=True, changed=True, data={"user": args["user"]},
                      message=f"logged in as {args['user']}")
