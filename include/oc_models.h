/* oc_models: the models opencode offers, so that a message naming another is refused before anything
 * runs (400 unknown_model), and the default one, sent explicitly in server mode when the client
 * names none (opencode's server keeps a session's last model: one bad name would otherwise stick).
 *
 * The list comes from `opencode models` at start-up (per-session mode) and from the server's
 * GET /config/providers and GET /config whenever a server becomes ready (each restart). Until one
 * is known, messages naming a model get 503 oc_models_unavailable. */
#ifndef OCPM_OC_MODELS_H
#define OCPM_OC_MODELS_H

#include <json-c/json.h>

typedef struct oc_models oc_models_t;

oc_models_t *oc_models_new(void);
void oc_models_free(oc_models_t *m);
/* Replace the list with the "provider/model" lines of `opencode models`. Returns how many. */
int oc_models_set_lines(oc_models_t *m, const char *text);
/* Replace the list (and the default) with the server's answers: /config/providers, /config. */
int oc_models_set_providers(oc_models_t *m, json_object *providers, json_object *config);
/* 1 known, 0 unknown, -1 no list yet. */
int oc_models_known(const oc_models_t *m, const char *model);
/* The configured default ("provider/model"), or NULL. */
const char *oc_models_default(const oc_models_t *m);
/* How many, or -1 before the first list. */
long oc_models_count(const oc_models_t *m);

#endif
