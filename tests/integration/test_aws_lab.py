"""``runbook lab up --with aws``: the moto server outlives the CLI that started it,
holds the seeds' world, and the lab inventory's targets drive a failover drill;
``lab down`` stops it."""
from __future__ import annotations

import json

import yaml
from helpers.run import pid_alive, runbook_cli, wait_gone, write_runbook
from services.postgres import _require_postgres, lab_dir_for

DRILL = """
name: Lab failover drill
steps:
  - name: Promote the DR database
    target: aws_dr
    aws.rds_promote_replica: {instance: itdo-erp-dr}
  - name: Move DNS to DR
    target: aws_primary
    aws.route53_upsert: {zone: itdo-erp.com, name: api.itdo-erp.com, type: CNAME, ttl: 60,
                         values: ["{{ aws_dns_dr }}"]}
  - name: DNS points at DR
    target: aws_primary
    aws.call: {service: route53, operation: ListResourceRecordSets,
               params: {HostedZoneId: "{{ aws_zone_id }}"},
               select: "ResourceRecordSets[?Name=='api.itdo-erp.com.'].ResourceRecords[0].Value | [0]"}
    register: dns
    verify:
      - that: dns.selected == aws_dns_dr
"""


def test_lab_up_with_aws_serves_the_seeded_world_to_a_drill_and_lab_down_stops_it(tmp_path, aws_clean_env):
    _require_postgres()
    lab_dir = lab_dir_for("aws-part")
    moto = {"pid": 0}
    try:
        up = runbook_cli("lab", "up", "--dir", lab_dir, "--with", "aws", cwd=tmp_path, timeout=180)
        assert up.rc == 0, up.output
        status = json.loads(runbook_cli("lab", "status", "--dir", lab_dir, "--json", cwd=tmp_path).stdout)
        moto = status["services"]["aws"]
        assert moto["running"] is True and pid_alive(moto["pid"])
        assert moto["detail"].startswith("moto at http://127.0.0.1:")

        inventory = yaml.safe_load((lab_dir / "inventory.yaml").read_text())
        assert set(inventory["groups"]["aws"]["targets"]) == {"aws_primary", "aws_dr"}
        dr = inventory["groups"]["aws"]["targets"]["aws_dr"]["aws"]
        assert dr["region"] == "us-east-1" and dr["endpoint_url"] == moto["url"]
        assert dr["secret_access_key"] == "{{ secrets.aws_lab_secret_access_key }}"
        secret = (lab_dir / "aws-lab-secret-access-key").read_text().strip()

        write_runbook(tmp_path, DRILL)
        for extra in (["--dry-run"], []):
            ran = runbook_cli("run", "runbook.yaml", "-i", lab_dir / "inventory.yaml",
                              "--state-dir", "state", *extra, cwd=tmp_path, timeout=120)
            assert ran.rc == 0, ran.output
            assert secret not in ran.output
    finally:
        down = runbook_cli("lab", "down", "--dir", lab_dir, cwd=tmp_path, timeout=120)
    assert down.rc == 0, down.output
    assert "aws" in down.stdout
    assert moto["pid"] and wait_gone(moto["pid"], within=10)
