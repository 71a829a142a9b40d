/* SPDX-License-Identifier: Apache-2.0
 * Self-contained HTML evaluation reports (custos eval --fairness, custos redteam; docs/rai-eval.md): one page, inline
 * CSS, charts as inline SVG with <title>/<desc> and a data table as text alternative; no scripts, no external assets,
 * no URLs. Writers go to a FILE; text is HTML-escaped. Not thread-safe per FILE. */
#ifndef CUSTOS_SAFETY_EVALREPORT_H
#define CUSTOS_SAFETY_EVALREPORT_H

#include <stddef.h>
#include <stdio.h>

/* Writes s HTML-escaped (& < > " '). NULL writes nothing. */
void custos_report_esc(FILE *f, const char *s);

/* Opens the page: doctype, lang="en", <title>, inline style, <main>, <h1>. */
void custos_report_begin(FILE *f, const char *title);
/* Closes the page (footer line naming the generator). */
void custos_report_end(FILE *f);

/* One bar of a rate chart: a rate in [0,1] with its interval. */
typedef struct custos_report_bar {
    const char *label;    /* row label, e.g. "religion / muslim" */
    double value, lo, hi; /* fractions */
    int highlight;        /* drawn in the warning colour (e.g. the extremes of a disparity) */
} custos_report_bar_t;

/* A horizontal bar chart of rates with interval whiskers (0-100 % axis), followed by the same data as a table.
 * id makes the SVG's title/desc ids unique within the page. */
void custos_report_rate_chart(FILE *f, const char *id, const char *title, const char *desc,
                              const custos_report_bar_t *bars, size_t n);

#define CUSTOS_REPORT_MAX_SERIES 6

/* One row of a stacked chart: counts per series. */
typedef struct custos_report_stack {
    const char *label;
    unsigned count[CUSTOS_REPORT_MAX_SERIES];
} custos_report_stack_t;

/* A horizontal stacked bar chart (each row scaled to its total, shown as shares), with a legend and a data table.
 * series names and colours (CSS colours, e.g. "#b2182b") have nseries entries (<= CUSTOS_REPORT_MAX_SERIES). */
void custos_report_stack_chart(FILE *f, const char *id, const char *title, const char *desc, const char *const *series,
                               const char *const *colours, size_t nseries, const custos_report_stack_t *rows, size_t n);

#endif
