"""The redactor: known secrets and passwords inside connection strings never leave the engine."""
from engine.secrets import MASK, Redactor


def test_known_secret_is_masked_inside_longer_strings_and_structures():
    redactor = Redactor(["hunter2-long"])
    masked = redactor.mask({"cmd": ["psql", "-c", "pw=hunter2-long;"], "nested": {"k": "hunter2-long"}})
    assert masked == {"cmd": ["psql", "-c", f"pw={MASK};"], "nested": {"k": MASK}}


def test_url_password_is_masked_even_without_known_secrets():
    masked = Redactor().mask("postgresql://app:s3cret@db1:5432/erp?sslmode=require")
    assert masked == "postgresql://app:***@db1:5432/erp?sslmode=require"


def test_key_value_password_is_masked():
    assert Redactor().mask("host=db1 password=s3cret user=app") == "host=db1 password=*** user=app"
    assert Redactor().mask("PASSWORD='two words'") == "PASSWORD=***"


def test_urls_without_credentials_are_left_alone():
    text = "https://status.example.com/incidents/1?by=ops@example.com"
    assert Redactor().mask(text) == text


def test_short_secrets_are_masked_only_as_whole_values():
    redactor = Redactor(["ab"])
    assert redactor.mask(["ab", "abc"]) == [MASK, "abc"]
