"""Regenerate autoscaler/data/on_demand_prices.json from karpenter's generated Go price table.

    python tools/update_prices.py path/to/zz_generated.pricing_aws.go [--commit SHA] [--retrieved YYYY-MM-DD]

The input is aws/karpenter-provider-aws, pkg/providers/pricing/zz_generated.pricing_aws.go: AWS's
public on-demand Linux prices in $/h, per region and instance type, generated from the AWS Pricing
API (today it carries us-east-1 only). Only the figures are taken: every `"region": {` block and
every `"instance-type": price` pair in it. The JSON keeps one line per instance type so a refresh
reads as a diff of prices.
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "autoscaler" / "data" / "on_demand_prices.json"
SOURCE = "aws/karpenter-provider-aws pkg/providers/pricing/zz_generated.pricing_aws.go"

_GENERATED = re.compile(r"^// generated at (\S+)")
_REGION = re.compile(r'^\s*"([a-z]{2}(?:-[a-z]+)+-\d+)"\s*:\s*\{')
_PRICE = re.compile(r'"([a-z0-9][a-z0-9.-]*\.[a-z0-9-]+)"\s*:\s*([0-9]+(?:\.[0-9]+)?)')


def parse(text: str) -> tuple[str, dict[str, dict[str, float]]]:
    """(when the Go file was generated, region -> instance type -> $/h)."""
    generated = ""
    prices: dict[str, dict[str, float]] = {}
    region = None
    for line in text.splitlines():
        if not generated and (match := _GENERATED.match(line)):
            generated = match.group(1)
        if match := _REGION.match(line):
            region = match.group(1)
            prices.setdefault(region, {})
            continue
        if region is None or line.lstrip().startswith("//"):
            continue
        for instance_type, price in _PRICE.findall(line):
            prices[region][instance_type] = float(price)
    return generated, {r: dict(sorted(types.items())) for r, types in sorted(prices.items()) if types}


def render(generated: str, prices: dict, commit: str, retrieved: str) -> str:
    lines = ["{",
             f'  "source": {json.dumps(SOURCE + (f" at commit {commit}" if commit else ""))},',
             f'  "generated_at": {json.dumps(generated)},',
             f'  "retrieved": {json.dumps(retrieved)},',
             '  "unit": "USD per instance-hour, on-demand, Linux",',
             '  "regenerate": "python tools/update_prices.py <zz_generated.pricing_aws.go> --commit <sha>",',
             '  "prices": {']
    for region_index, (region, types) in enumerate(prices.items()):
        lines.append(f"    {json.dumps(region)}: {{")
        rows = [f"      {json.dumps(t)}: {p!r}" for t, p in types.items()]
        lines.append(",\n".join(rows))
        lines.append("    }" + ("," if region_index < len(prices) - 1 else ""))
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("go_files", nargs="+", type=Path, help="zz_generated.pricing_aws.go (more files merge)")
    parser.add_argument("--commit", default="", help="the commit of karpenter-provider-aws the file is from")
    parser.add_argument("--retrieved", default=datetime.date.today().isoformat(), help="when it was fetched")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    generated, merged = "", {}
    for path in args.go_files:
        when, prices = parse(path.read_text())
        generated = generated or when
        merged.update(prices)
    if not merged:
        print(f"error: no prices found in {', '.join(map(str, args.go_files))}", file=sys.stderr)
        return 2
    args.output.write_text(render(generated, dict(sorted(merged.items())), args.commit, args.retrieved))
    count = sum(len(types) for types in merged.values())
    print(f"{args.output}: {count} prices in {len(merged)} region(s), generated at {generated}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
