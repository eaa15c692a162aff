// Wrappers that make libedit callable from Swift.
//
// el_set, el_get and history() are C variadic functions, which Swift cannot call, and EL_HIST needs
// `history` itself as a function pointer; so each operation kvsh needs gets one fixed-signature
// static inline wrapper here. The C globals stdin/stdout/stderr are shared mutable state to Swift 6,
// so they are returned from functions instead.
#ifndef KVSH_CLIBEDIT_SHIM_H
#define KVSH_CLIBEDIT_SHIM_H

#include <histedit.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

/// Prompt callback type: returns a C string that must outlive the call.
typedef char *(*clibedit_prompt_fn)(EditLine *);
/// Editor function callback type (EL_ADDFN): returns one of the CC_* codes.
typedef unsigned char (*clibedit_editor_fn)(EditLine *, int);

// MARK: - Standard streams

static inline FILE *clibedit_stdin(void) { return stdin; }
static inline FILE *clibedit_stdout(void) { return stdout; }
static inline FILE *clibedit_stderr(void) { return stderr; }

// MARK: - Process setup

/// Makes the C library decode multibyte input per the environment; without it libedit silently drops
/// non-ASCII input. Returns 0 when the locale could not be set.
static inline int clibedit_setlocale_ctype(void) {
    return setlocale(LC_CTYPE, "") != NULL;
}

static void clibedit_sigint_noop(int signo) { (void)signo; }

/// Installs a SIGINT handler that does nothing, deliberately without SA_RESTART: a Ctrl-C then makes the
/// read inside el_gets fail with EINTR, so el_gets returns count -1 and the caller drops the line instead
/// of the process dying. The handler it replaces is stored in *previous (may be NULL) so it can be put
/// back later. Returns 0 on success, -1 (errno set) on failure.
static inline int clibedit_install_sigint_handler(struct sigaction *previous) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = clibedit_sigint_noop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    return sigaction(SIGINT, &sa, previous);
}

/// Puts back a SIGINT disposition saved by clibedit_install_sigint_handler.
static inline int clibedit_restore_sigint_handler(const struct sigaction *previous) {
    return sigaction(SIGINT, previous, NULL);
}

// MARK: - el_set / el_get

static inline int clibedit_set_prompt(EditLine *el, clibedit_prompt_fn fn) {
    return el_set(el, EL_PROMPT, fn);
}

static inline int clibedit_set_editor(EditLine *el, const char *mode) {
    return el_set(el, EL_EDITOR, mode);
}

static inline int clibedit_set_signal(EditLine *el, int on) {
    return el_set(el, EL_SIGNAL, on);
}

/// Attaches a history list; the history function must be passed as a pointer, which only C can do.
static inline int clibedit_set_hist(EditLine *el, History *h) {
    return el_set(el, EL_HIST, history, h);
}

static inline int clibedit_set_clientdata(EditLine *el, void *data) {
    return el_set(el, EL_CLIENTDATA, data);
}

static inline void *clibedit_get_clientdata(EditLine *el) {
    void *data = NULL;
    if (el_get(el, EL_CLIENTDATA, &data) != 0) return NULL;
    return data;
}

static inline int clibedit_add_function(EditLine *el, const char *name, const char *help,
                                        clibedit_editor_fn fn) {
    return el_set(el, EL_ADDFN, name, help, fn);
}

/// Binds one key sequence (e.g. "^I") to a named editor function.
static inline int clibedit_bind(EditLine *el, const char *key, const char *function) {
    return el_set(el, EL_BIND, key, function, (const char *)NULL);
}

/// The terminal width libedit is working with (its "co" capability), or 0 if unknown.
static inline int clibedit_get_columns(EditLine *el) {
    int columns = 0;
    if (el_get(el, EL_GETTC, "co", &columns, (void *)NULL) != 0) return 0;
    return columns;
}

/// Character reader callback type (EL_GETCFN): stores one character, returns 1, 0 at end of input, -1 on error.
typedef int (*clibedit_getc_fn)(EditLine *, wchar_t *);

/// Replaces libedit's reader of characters (so the editor can wait for other things than keys too).
static inline int clibedit_set_getcfn(EditLine *el, clibedit_getc_fn fn) {
    return el_set(el, EL_GETCFN, fn);
}

/// Redraws the prompt and the line from the start of the cursor's row, assuming that row is blank.
static inline int clibedit_refresh(EditLine *el) {
    return el_set(el, EL_REFRESH);
}

/// Turns off the terminal's signal keys (isig) while a line is edited, so Ctrl-C arrives as a key the editor binds
/// instead of a SIGINT that switches the terminal back to cooked mode between two keys.
static inline int clibedit_edit_without_signal_keys(EditLine *el) {
    return el_set(el, EL_SETTY, "-d", "-isig", (const char *)NULL);
}

// MARK: - history()

static inline int clibedit_history_setsize(History *h, int size) {
    HistEvent ev;
    return history(h, &ev, H_SETSIZE, size);
}

static inline int clibedit_history_setunique(History *h, int unique) {
    HistEvent ev;
    return history(h, &ev, H_SETUNIQUE, unique);
}

static inline int clibedit_history_enter(History *h, const char *line) {
    HistEvent ev;
    return history(h, &ev, H_ENTER, line);
}

/// Returns the number of entries loaded, or -1 (e.g. the file does not exist).
static inline int clibedit_history_load(History *h, const char *path) {
    HistEvent ev;
    return history(h, &ev, H_LOAD, path);
}

/// The newest history entry (first != 0) or the one older than the last returned; NULL past the oldest.
static inline const char *clibedit_history_step(History *h, int first) {
    HistEvent ev;
    if (history(h, &ev, first ? H_FIRST : H_NEXT) != 0) return NULL;
    return ev.str;
}

/// Returns the number of entries saved, or -1.
static inline int clibedit_history_save(History *h, const char *path) {
    HistEvent ev;
    return history(h, &ev, H_SAVE, path);
}

#endif
