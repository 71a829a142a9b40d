/* SPDX-License-Identifier: Apache-2.0
 * The `pkcs11` KEK provider: the module named in the configuration is dlopen'ed (p11-kit's pkcs11.h for the
 * types); one R/W user session on the token with the configured label, serialised by k->mu. KEK version 1
 * is the secret key labelled key_label, version N > 1 "<key_label>.vN"; keys custos generates are AES-256,
 * token objects, sensitive and not extractable. Wrapping is C_Encrypt/C_Decrypt with CKM_AES_GCM inside the
 * token (the KEK never leaves it): out = nonce(12) | ciphertext(32) | tag(16). */
#include "crypto/kek_internal.h"
#include "util/err.h"

#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <p11-kit/pkcs11.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P11_CACHE 64

/* C_Initialize/C_Finalize are per process: counted, so that a second provider handle (the start-up check,
 * a CLI step) does not finalize the module under another one. */
static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned init_users;

typedef struct {
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE sess;
    bool initialized, logged_in, have_session;
    char label[64];
    uint32_t ver[P11_CACHE];
    CK_OBJECT_HANDLE obj[P11_CACHE];
} p11_t;

static const char *rv_name(CK_RV rv)
{
    switch (rv) {
    case CKR_PIN_INCORRECT:
        return "CKR_PIN_INCORRECT";
    case CKR_PIN_LOCKED:
        return "CKR_PIN_LOCKED";
    case CKR_PIN_LEN_RANGE:
        return "CKR_PIN_LEN_RANGE";
    case CKR_USER_PIN_NOT_INITIALIZED:
        return "CKR_USER_PIN_NOT_INITIALIZED";
    case CKR_TOKEN_NOT_PRESENT:
        return "CKR_TOKEN_NOT_PRESENT";
    case CKR_DEVICE_ERROR:
        return "CKR_DEVICE_ERROR";
    case CKR_ENCRYPTED_DATA_INVALID:
        return "CKR_ENCRYPTED_DATA_INVALID";
    case CKR_MECHANISM_INVALID:
        return "CKR_MECHANISM_INVALID";
    case CKR_KEY_HANDLE_INVALID:
        return "CKR_KEY_HANDLE_INVALID";
    default:
        return "CKR error";
    }
}

static void p11_label(const custos_kek_t *k, uint32_t v, char *out, size_t cap)
{
    const p11_t *p = k->impl;
    if (v <= 1)
        snprintf(out, cap, "%s", p->label);
    else
        snprintf(out, cap, "%s.v%u", p->label, v);
}

/* Finds version v's key object (caller holds k->mu). 0, CUSTOS_ENOTFOUND or CUSTOS_EIO. */
static int find_key(custos_kek_t *k, uint32_t v, CK_OBJECT_HANDLE *h)
{
    p11_t *p = k->impl;
    size_t slot = v % P11_CACHE;
    if (p->ver[slot] == v && p->obj[slot] != CK_INVALID_HANDLE) {
        *h = p->obj[slot];
        return 0;
    }
    char label[80];
    p11_label(k, v, label, sizeof(label));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, label, strlen(label)}};
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    if (p->f->C_FindObjectsInit(p->sess, tmpl, 2) != CKR_OK)
        return CUSTOS_EIO;
    CK_RV rv = p->f->C_FindObjects(p->sess, found, 2, &n);
    p->f->C_FindObjectsFinal(p->sess);
    if (rv != CKR_OK)
        return CUSTOS_EIO;
    if (n == 0)
        return CUSTOS_ENOTFOUND;
    if (n > 1)
        return CUSTOS_EIO; /* ambiguous label: refuse rather than guess */
    p->ver[slot] = v;
    p->obj[slot] = found[0];
    *h = found[0];
    return 0;
}

static int p11_exists(custos_kek_t *k, uint32_t v, char *err, size_t errlen)
{
    CK_OBJECT_HANDLE h;
    char label[80];
    p11_label(k, v, label, sizeof(label));
    pthread_mutex_lock(&k->mu);
    int rc = find_key(k, v, &h);
    pthread_mutex_unlock(&k->mu);
    if (rc == CUSTOS_ENOTFOUND)
        snprintf(err, errlen, "pkcs11: no secret key labelled '%s' on the token", label);
    else if (rc != 0)
        snprintf(err, errlen, "pkcs11: cannot look up the key labelled '%s' (more than one, or a token error)", label);
    return rc;
}

static int p11_create(custos_kek_t *k, uint32_t v, char *err, size_t errlen)
{
    p11_t *p = k->impl;
    char label[80];
    p11_label(k, v, label, sizeof(label));
    CK_OBJECT_HANDLE h;
    pthread_mutex_lock(&k->mu);
    int rc = find_key(k, v, &h);
    if (rc == 0) {
        pthread_mutex_unlock(&k->mu);
        snprintf(err, errlen, "pkcs11: a key labelled '%s' exists already", label);
        return CUSTOS_EAGAIN;
    }
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ULONG len = CUSTOS_KEY_LEN;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &kt, sizeof(kt)},    {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_LABEL, label, strlen(label)},  {CKA_TOKEN, &yes, sizeof(yes)},     {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &no, sizeof(no)}, {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_DECRYPT, &yes, sizeof(yes)},   {CKA_WRAP, &yes, sizeof(yes)},      {CKA_UNWRAP, &yes, sizeof(yes)},
    };
    CK_RV rv = p->f->C_GenerateKey(p->sess, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
    pthread_mutex_unlock(&k->mu);
    if (rv != CKR_OK) {
        snprintf(err, errlen, "pkcs11: cannot generate key '%s': %s (0x%lx)", label, rv_name(rv), (unsigned long)rv);
        return CUSTOS_EIO;
    }
    return 0;
}

/* out has room for outcap bytes (some modules want room for the whole input even when decrypting); a
 * result of exactly want bytes is success. */
static int p11_crypt(custos_kek_t *k, bool enc, uint32_t v, const void *aad, size_t aadlen, unsigned char *nonce,
                     const unsigned char *in, CK_ULONG inlen, unsigned char *out, CK_ULONG outcap, CK_ULONG want)
{
    p11_t *p = k->impl;
    CK_GCM_PARAMS gp = {.iv_ptr = nonce,
                        .iv_len = CUSTOS_NONCE_LEN,
                        .iv_bits = CUSTOS_NONCE_LEN * 8,
                        .aad_ptr = (unsigned char *)aad,
                        .aad_len = aadlen,
                        .tag_bits = CUSTOS_TAG_LEN * 8};
    CK_MECHANISM mech = {CKM_AES_GCM, &gp, sizeof(gp)};
    CK_OBJECT_HANDLE h;
    pthread_mutex_lock(&k->mu);
    int rc = find_key(k, v, &h);
    if (rc != 0) {
        pthread_mutex_unlock(&k->mu);
        return rc == CUSTOS_ENOTFOUND ? CUSTOS_EKEYGONE : rc;
    }
    CK_RV rv = enc ? p->f->C_EncryptInit(p->sess, &mech, h) : p->f->C_DecryptInit(p->sess, &mech, h);
    CK_ULONG olen = outcap;
    bool started = rv == CKR_OK;
    if (rv == CKR_OK)
        rv = enc ? p->f->C_Encrypt(p->sess, (unsigned char *)in, inlen, out, &olen)
                 : p->f->C_Decrypt(p->sess, (unsigned char *)in, inlen, out, &olen);
    if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID)
        p->obj[v % P11_CACHE] = CK_INVALID_HANDLE; /* destroyed by someone else: look it up again next time */
    pthread_mutex_unlock(&k->mu);
    if (rv == CKR_OK && olen == want)
        return 0;
    OPENSSL_cleanse(out, outcap);
    /* Modules differ in what a failed GCM tag check returns (SoftHSM2: CKR_GENERAL_ERROR); anything but a
     * token, session or memory failure after a successful C_DecryptInit counts as an integrity failure. */
    if (!enc && started && rv != CKR_DEVICE_ERROR && rv != CKR_DEVICE_REMOVED && rv != CKR_DEVICE_MEMORY &&
        rv != CKR_HOST_MEMORY && rv != CKR_SESSION_HANDLE_INVALID && rv != CKR_SESSION_CLOSED &&
        rv != CKR_USER_NOT_LOGGED_IN && rv != CKR_TOKEN_NOT_PRESENT)
        return CUSTOS_EDECRYPT;
    return CUSTOS_EIO;
}

static int p11_wrap(custos_kek_t *k, uint32_t v, const void *aad, size_t aadlen, const unsigned char *dek,
                    unsigned char *out)
{
    if (RAND_bytes(out, CUSTOS_NONCE_LEN) != 1)
        return CUSTOS_EIO;
    return p11_crypt(k, true, v, aad, aadlen, out, dek, CUSTOS_KEY_LEN, out + CUSTOS_NONCE_LEN,
                     CUSTOS_KEY_LEN + CUSTOS_TAG_LEN, CUSTOS_KEY_LEN + CUSTOS_TAG_LEN);
}

static int p11_unwrap(custos_kek_t *k, uint32_t v, const void *aad, size_t aadlen, const unsigned char *in,
                      unsigned char *dek)
{
    unsigned char nonce[CUSTOS_NONCE_LEN];
    memcpy(nonce, in, sizeof(nonce));
    unsigned char *tmp = custos_secure_alloc(CUSTOS_KEY_LEN + CUSTOS_TAG_LEN);
    if (!tmp)
        return CUSTOS_ENOMEM;
    int rc = p11_crypt(k, false, v, aad, aadlen, nonce, in + CUSTOS_NONCE_LEN, CUSTOS_KEY_LEN + CUSTOS_TAG_LEN, tmp,
                       CUSTOS_KEY_LEN + CUSTOS_TAG_LEN, CUSTOS_KEY_LEN);
    if (rc == 0)
        memcpy(dek, tmp, CUSTOS_KEY_LEN);
    custos_secure_free(tmp, CUSTOS_KEY_LEN + CUSTOS_TAG_LEN);
    return rc;
}

static int p11_destroy(custos_kek_t *k, uint32_t v, char *err, size_t errlen)
{
    p11_t *p = k->impl;
    CK_OBJECT_HANDLE h;
    char label[80];
    p11_label(k, v, label, sizeof(label));
    pthread_mutex_lock(&k->mu);
    int rc = find_key(k, v, &h);
    CK_RV rv = CKR_OK;
    if (rc == 0) {
        rv = p->f->C_DestroyObject(p->sess, h);
        p->obj[v % P11_CACHE] = CK_INVALID_HANDLE;
        p->ver[v % P11_CACHE] = 0;
    }
    pthread_mutex_unlock(&k->mu);
    if (rc == CUSTOS_ENOTFOUND) {
        snprintf(err, errlen, "pkcs11: no key labelled '%s' on the token", label);
        return rc;
    }
    if (rc != 0 || rv != CKR_OK) {
        snprintf(err, errlen, "pkcs11: cannot destroy key '%s': %s", label, rc ? "token error" : rv_name(rv));
        return CUSTOS_EIO;
    }
    return 0;
}

static void p11_close(custos_kek_t *k)
{
    p11_t *p = k->impl;
    if (!p)
        return;
    if (p->f) {
        /* The login belongs to the application, not the session: log out only when the last user closes. */
        pthread_mutex_lock(&init_mu);
        if (p->logged_in && init_users == 1)
            p->f->C_Logout(p->sess);
        pthread_mutex_unlock(&init_mu);
        if (p->have_session)
            p->f->C_CloseSession(p->sess);
        if (p->initialized) {
            pthread_mutex_lock(&init_mu);
            if (--init_users == 0)
                p->f->C_Finalize(NULL);
            pthread_mutex_unlock(&init_mu);
        }
    }
    /* The module stays mapped: some modules leave threads or atexit handlers behind that would run unmapped
     * code after dlclose. */
    free(p);
    k->impl = NULL;
}

static const kek_ops_t P11 = {"pkcs11", p11_label,  p11_exists,  p11_create,
                              p11_wrap, p11_unwrap, p11_destroy, p11_close};

/* Token labels are 32 bytes, space-padded. */
static bool label_is(const unsigned char lab[32], const char *want)
{
    size_t n = strlen(want), end = 32;
    while (end > 0 && lab[end - 1] == ' ')
        end--;
    return n == end && memcmp(lab, want, n) == 0;
}

int custos_kek_pkcs11_open(const custos_storage_config_t *sc, custos_kek_t *k, char *err, size_t errlen)
{
    k->ops = &P11;
    p11_t *p = calloc(1, sizeof(*p));
    if (!p)
        return CUSTOS_ENOMEM;
    k->impl = p;
    if (!sc->pkcs11_module || !sc->pkcs11_token || !sc->pkcs11_key_label) {
        snprintf(err, errlen, "pkcs11: module, token and key_label are required");
        return CUSTOS_EINVAL;
    }
    if (!sc->pkcs11_pin || !sc->pkcs11_pin_len) {
        snprintf(err, errlen, "pkcs11: no PIN configured (storage.encryption.pkcs11.pin_env or pin_file)");
        return CUSTOS_EUNAVAIL;
    }
    snprintf(p->label, sizeof(p->label), "%s", sc->pkcs11_key_label);
    for (size_t i = 0; i < P11_CACHE; i++)
        p->obj[i] = CK_INVALID_HANDLE;
    p->dl = dlopen(sc->pkcs11_module, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        snprintf(err, errlen, "pkcs11: cannot load module %s", sc->pkcs11_module);
        return CUSTOS_EIO;
    }
    CK_C_GetFunctionList gfl;
    *(void **)&gfl = dlsym(p->dl, "C_GetFunctionList");
    if (!gfl || gfl(&p->f) != CKR_OK || !p->f) {
        snprintf(err, errlen, "pkcs11: %s is not a PKCS#11 module", sc->pkcs11_module);
        p->f = NULL;
        return CUSTOS_EIO;
    }
    CK_C_INITIALIZE_ARGS ia;
    memset(&ia, 0, sizeof(ia));
    ia.flags = CKF_OS_LOCKING_OK;
    pthread_mutex_lock(&init_mu);
    CK_RV rv = init_users ? CKR_OK : p->f->C_Initialize(&ia);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) /* by someone else in this process: never finalize it */
        init_users++;
    if (rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
        init_users++;
    pthread_mutex_unlock(&init_mu);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        snprintf(err, errlen, "pkcs11: C_Initialize failed: %s (0x%lx)", rv_name(rv), (unsigned long)rv);
        return CUSTOS_EIO;
    }
    p->initialized = true;
    CK_SLOT_ID slots[64];
    CK_ULONG ns = 64;
    if ((rv = p->f->C_GetSlotList(CK_TRUE, slots, &ns)) != CKR_OK) {
        snprintf(err, errlen, "pkcs11: cannot list slots: %s", rv_name(rv));
        return CUSTOS_EIO;
    }
    CK_SLOT_ID slot = 0;
    bool found = false;
    for (CK_ULONG i = 0; i < ns && !found; i++) {
        CK_TOKEN_INFO ti;
        if (p->f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && label_is(ti.label, sc->pkcs11_token)) {
            slot = slots[i];
            found = true;
        }
    }
    if (!found) {
        snprintf(err, errlen, "pkcs11: no token labelled '%s' in module %s", sc->pkcs11_token, sc->pkcs11_module);
        return CUSTOS_ENOTFOUND;
    }
    if ((rv = p->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->sess)) != CKR_OK) {
        snprintf(err, errlen, "pkcs11: cannot open a session on token '%s': %s", sc->pkcs11_token, rv_name(rv));
        return CUSTOS_EIO;
    }
    p->have_session = true;
    rv = p->f->C_Login(p->sess, CKU_USER, (unsigned char *)sc->pkcs11_pin, sc->pkcs11_pin_len);
    if (rv == CKR_USER_ALREADY_LOGGED_IN)
        rv = CKR_OK;
    if (rv != CKR_OK) {
        snprintf(err, errlen, "pkcs11: login to token '%s' failed: %s%s", sc->pkcs11_token, rv_name(rv),
                 rv == CKR_PIN_INCORRECT ? " (wrong PIN)" : "");
        return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_LEN_RANGE ? CUSTOS_EUNAVAIL
                                                                                          : CUSTOS_EIO;
    }
    p->logged_in = true;
    return 0;
}
