#!/usr/bin/python3
"""Parse /metrics in both expositions with prometheus_client's strict parsers and compare them.

openmetrics_check.py OM_FILE PROM_FILE [VOLATILE_FAMILY...]
OM_FILE must parse with prometheus_client.openmetrics.parser (which refuses what OpenMetrics 1.0
refuses: a missing # EOF, a counter sample without _total, a # UNIT that is not the name's suffix,
bad escapes, interleaved families...), PROM_FILE with prometheus_client.parser. Both must hold the
same families with the same types and the same samples with the same values, except the families
named as volatile (values that move between two scrapes), whose samples must merely match by name
and labels. Prints what differs and exits 1; prints a summary and exits 0 when all is well."""
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as prom_parse


def families(parse, text):
    out = {}
    for fam in parse(text):
        samples = {}
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        out[fam.name] = (fam.type, fam.unit if hasattr(fam, "unit") else "", samples)
    return out


def main():
    om_text, prom_text = open(sys.argv[1]).read(), open(sys.argv[2]).read()
    volatile = set(sys.argv[3:])
    errors = []
    try:
        om = families(om_parse, om_text)
    except Exception as e:  # the parser's own message says what is wrong
        print("OpenMetrics parse error: %s" % e)
        return 1
    try:
        prom = families(prom_parse, prom_text)
    except Exception as e:
        print("Prometheus text parse error: %s" % e)
        return 1
    if set(om) != set(prom):
        errors.append("families differ: only OM %s, only text %s" % (sorted(set(om) - set(prom)), sorted(set(prom) - set(om))))
    for name in sorted(set(om) & set(prom)):
        (ot, unit, osamp), (pt, _, psamp) = om[name], prom[name]
        if ot != pt:
            errors.append("%s: type %s in OM, %s in text" % (name, ot, pt))
        for suffix in ("seconds", "bytes"):
            if name.endswith("_" + suffix) and unit != suffix:
                errors.append("%s: OM unit %r, want %r" % (name, unit, suffix))
        if set(osamp) != set(psamp):
            errors.append("%s: samples differ: %s" % (name, sorted(set(osamp) ^ set(psamp))[:4]))
        elif name not in volatile:
            for k in osamp:
                if osamp[k] != psamp[k]:
                    errors.append("%s%s: %r in OM, %r in text" % (k[0], dict(k[1]), osamp[k], psamp[k]))
    for e in errors:
        print(e)
    if not errors:
        print("%d families, %d samples alike" % (len(om), sum(len(f[2]) for f in om.values())))
    return 1 if errors else 0


sys.exit(main())
