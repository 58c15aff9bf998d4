/* ctl_cluster_front: what the cluster file gives the front nginx and Prometheus (ctl_cluster.h):
 * the nodes' part of nginx/ocpm-cluster.conf.in, and a scrape configuration through the front. No
 * I/O but the stream written; the file was read and checked by ctl_cluster_load. */
#define _GNU_SOURCE
#include "ctl_cluster.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

int ctl_front_address(const char *url, char *addr, size_t addrlen)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *host = url + 7, *colon;
    char ip[64], canon[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    int v6 = host[0] == '[';
    if (v6) {
        const char *close = strchr(host, ']');
        if (!close || close[1] != ':' || (size_t)(close - host - 1) >= sizeof ip)
            return -1;
        snprintf(ip, sizeof ip, "%.*s", (int)(close - host - 1), host + 1);
        colon = close + 1;
    } else {
        colon = strchr(host, ':');
        if (!colon || (size_t)(colon - host) >= sizeof ip)
            return -1;
        snprintf(ip, sizeof ip, "%.*s", (int)(colon - host), host);
    }
    /* The address exactly as nginx writes it back in $upstream_addr (inet_ntop's form), or the
     * front could not tell which node answered its probe. */
    if (inet_pton(v6 ? AF_INET6 : AF_INET, ip, bin) != 1 || !inet_ntop(v6 ? AF_INET6 : AF_INET, bin, canon, sizeof canon) ||
        strcmp(canon, ip) != 0)
        return -1;
    const char *port = colon + 1;
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || digits > 5 || port[0] == '0' || (port[digits] && strcmp(port + digits, "/") != 0) ||
        atol(port) > 65535)
        return -1;
    if (snprintf(addr, addrlen, v6 ? "[%s]:%.*s" : "%s:%.*s", ip, (int)digits, port) >= (int)addrlen)
        return -1;
    return 0;
}

int ctl_front_conf(const ctl_cluster_t *cl, FILE *f, char *err, size_t errlen)
{
    size_t n = ctl_cluster_count(cl);
    char(*addr)[96] = calloc(n ? n : 1, sizeof *addr);
    if (!addr)
        return snprintf(err, errlen, "out of memory"), -1;
    /* Two nodes on one address cannot come: an address has one canonical spelling, and the file may
     * not name one URL twice (ctl_cluster_load). */
    for (size_t i = 0; i < n; i++) {
        if (ctl_front_address(ctl_cluster_url(cl, i), addr[i], sizeof addr[i]) != 0) {
            snprintf(err, errlen, "node %s: the front needs http://ADDRESS:PORT with an IP address as nginx writes it "
                     "(no leading zeros, IPv6 in brackets, lower case, compressed), not %s",
                     ctl_cluster_name(cl, i), ctl_cluster_url(cl, i));
            return free(addr), -1;
        }
    }
    fputs("# Written by ocpmctl --cluster FILE front-conf from the cluster file: do not edit.\n"
          "upstream ocpm_place {\n    least_conn;\n    zone ocpm_place 64k;\n", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "    server %s max_fails=1 fail_timeout=2s;\n", addr[i]);
    fputs("    keepalive 16;\n}\n", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "upstream ocpm_node_%s {\n    zone ocpm_node_%s 64k;\n    server %s;\n    keepalive 16;\n}\n",
                ctl_cluster_name(cl, i), ctl_cluster_name(cl, i), addr[i]);
    fputs("map $ocpm_node $ocpm_upstream {\n    default \"\";\n", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "    %s ocpm_node_%s;\n", ctl_cluster_name(cl, i), ctl_cluster_name(cl, i));
    fputs("}\nmap $ocpm_placed_addr $ocpm_placed_node {\n    default \"\";\n", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "    \"%s\" %s;\n", addr[i], ctl_cluster_name(cl, i));
    /* Where a creation goes: only an address of a named node (never one without its Ocpm-Node). */
    fputs("}\nmap $ocpm_placed_addr $ocpm_placed_target {\n    default \"\";\n", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "    \"%s\" %s;\n", addr[i], addr[i]);
    fputs("}\nmap $host $ocpm_nodes_json {\n    default '[", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\"%s\"", i ? "," : "", ctl_cluster_name(cl, i));
    fputs("]';\n}\n", f);
    free(addr);
    return 0;
}

/* host:port, as Prometheus' targets take it: a name or address of [A-Za-z0-9.:[]-] and a port. */
static int ctl_front_target_ok(const char *front)
{
    const char *colon = strrchr(front, ':');
    return colon && colon != front && strspn(front, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") ==
                                          strlen(front) && strspn(colon + 1, "0123456789") == strlen(colon + 1) &&
           colon[1];
}

int ctl_prometheus_conf(const ctl_cluster_t *cl, const char *front, const char *password_file, FILE *f, char *err,
                        size_t errlen)
{
    if (!ctl_front_target_ok(front))
        return snprintf(err, errlen, "the front: expected HOST:PORT, not %s", front), -1;
    if (!*password_file || password_file[0] != '/' || strpbrk(password_file, "\"\\\n\r{},"))
        return snprintf(err, errlen, "the password file: expected an absolute path, not %s", password_file), -1;
    fprintf(f, "# Written by ocpmctl --cluster FILE prometheus-conf from the cluster file.\n"
               "scrape_configs:\n  - job_name: ocpm\n"
               "    basic_auth: {username: operator, password_file: \"%s\"}\n    static_configs:\n",
            password_file);
    for (size_t i = 0; i < ctl_cluster_count(cl); i++)
        fprintf(f, "      - targets: [\"%s\"]\n        labels: {node: %s}\n", front, ctl_cluster_name(cl, i));
    fputs("    relabel_configs:\n      - source_labels: [node]\n        target_label: __metrics_path__\n"
          "        replacement: /nodes/${1}/metrics\n", f);
    return 0;
}

/* front-conf and prometheus-conf FRONT [PASSWORD_FILE]: the cluster file in, the configuration out. */
static int ctl_front_command(ctl_opts_t *o, int argc, char **argv, int prometheus)
{
    char err[1400];
    if (prometheus ? argc < 1 || argc > 2 : argc != 0)
        return ctl_fail(prometheus ? "prometheus-conf needs FRONT_HOST:PORT [PASSWORD_FILE]" : "front-conf takes no argument"),
               2;
    ctl_cluster_t *cl = ctl_cluster_load(o->cluster, err, sizeof err);
    if (!cl)
        return ctl_fail("%s", err), 2;
    int rc = prometheus ? ctl_prometheus_conf(cl, argv[0], argc > 1 ? argv[1] : CTL_PROMETHEUS_PASSWORD_FILE, stdout,
                                              err, sizeof err)
                        : ctl_front_conf(cl, stdout, err, sizeof err);
    ctl_cluster_free(cl);
    return rc == 0 ? 0 : (ctl_fail("%s", err), 2);
}

int ctl_cluster_front(ctl_opts_t *o, int argc, char **argv) { return ctl_front_command(o, argc, argv, 0); }
int ctl_cluster_prometheus(ctl_opts_t *o, int argc, char **argv) { return ctl_front_command(o, argc, argv, 1); }
int ctl_needs_cluster(ctl_opts_t *o, int argc, char **argv)
{
    (void)o, (void)argc;
    return ctl_fail("%s reads the cluster file: give --cluster FILE", argv[-1]), 2;
}
