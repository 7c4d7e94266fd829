/*
 * normalize.c
 *	  Identifier normalizers: turn a raw identifier (an email address, a
 *	  phone number, any text) into the one form the identity graph stores,
 *	  or NULL when the value is not a usable identifier.
 *
 * Identity resolution joins identifiers by equality, so two spellings of one
 * address must normalize to the same bytes, and garbage must become NULL
 * rather than an identifier that links unrelated shoppers.  Every function
 * here is IMMUTABLE and works on the bytes of the database encoding in at
 * most one pass: the email and phone normalizers refuse a value once it is
 * longer than any address or number can be, so a 10 MB value costs no more
 * than its detoasting.
 *
 * In a UTF8 database the whitespace we trim or skip includes the Unicode
 * White_Space characters that copy-pasted data carry (NBSP, the U+2000
 * spaces, ...) and the invisible U+200B and U+FEFF.  In any other server
 * encoding only ASCII whitespace is recognized.  All server encodings are
 * ASCII-safe (no byte of a multibyte character is below 0x80), so matching
 * ASCII bytes never cuts a character, and in UTF-8 a match that starts at a
 * lead byte covers exactly one whole character.
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/formatting.h"

/* RFC 5321: a path is at most 256 octets including the angle brackets */
#define PZ_EMAIL_MAX_BYTES 254
/* E.164: a country code and subscriber number of at most 15 digits */
#define PZ_PHONE_MAX_DIGITS 15
/* shortest number we accept (digits after '+'), as the identity spec asks */
#define PZ_PHONE_MIN_DIGITS 8
/* a phone number spelled in more bytes than this is not a phone number */
#define PZ_PHONE_MAX_BYTES 128

/* ---------------------------------------------------------------------
 * whitespace
 * --------------------------------------------------------------------- */

/*
 * Length in bytes of the whitespace character starting at p, or 0 if there
 * is none.  ASCII whitespace always; in UTF-8 also U+0085, U+00A0, U+1680,
 * U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 (White_Space) and
 * the invisible U+200B and U+FEFF, which come along with copied text.
 */
static int
pz_space_len(const unsigned char *p, const unsigned char *end, bool utf8)
{
	if (*p == ' ' || (*p >= '\t' && *p <= '\r'))
		return 1;
	if (!utf8 || *p < 0xC2)
		return 0;
	if (p[0] == 0xC2)
		return (end - p >= 2 && (p[1] == 0x85 || p[1] == 0xA0)) ? 2 : 0;
	if (end - p < 3)
		return 0;
	switch (p[0])
	{
		case 0xE1: /* U+1680 */
			return (p[1] == 0x9A && p[2] == 0x80) ? 3 : 0;
		case 0xE2:
			if (p[1] == 0x80) /* U+2000..U+200B, U+2028, U+2029, U+202F */
				return (p[2] <= 0x8B || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF) ? 3 : 0;
			return (p[1] == 0x81 && p[2] == 0x9F) ? 3 : 0; /* U+205F */
		case 0xE3:                                         /* U+3000 */
			return (p[1] == 0x80 && p[2] == 0x80) ? 3 : 0;
		case 0xEF: /* U+FEFF */
			return (p[1] == 0xBB && p[2] == 0xBF) ? 3 : 0;
		default:
			return 0;
	}
}

/*
 * Length of the whitespace character that ends just before end (0 if none),
 * not reaching before start.  In valid UTF-8 a lead byte followed by its
 * continuation bytes is one whole character, so testing the last 1, 2 and 3
 * bytes with pz_space_len finds exactly the characters it would find going
 * forward.
 */
static int
pz_space_len_before(const unsigned char *start, const unsigned char *end, bool utf8)
{
	int n;

	for (n = 1; n <= (utf8 ? 3 : 1) && n <= end - start; n++)
	{
		if (pz_space_len(end - n, end, utf8) == n)
			return n;
	}
	return 0;
}

static inline bool
pz_db_is_utf8(void)
{
	return GetDatabaseEncoding() == PG_UTF8;
}

/* Narrow [*start, *end) to its part without leading or trailing whitespace. */
static void
pz_trim(const unsigned char **start, const unsigned char **end, bool utf8)
{
	const unsigned char *s = *start;
	const unsigned char *e = *end;
	int n;

	while (s < e && (n = pz_space_len(s, e, utf8)) > 0)
		s += n;
	while (e > s && (n = pz_space_len_before(s, e, utf8)) > 0)
		e -= n;
	*start = s;
	*end = e;
}

/* The trimmed bytes of a text argument. */
static void
pz_trimmed_arg(FunctionCallInfo fcinfo, int argno, const unsigned char **start,
			   const unsigned char **end)
{
	text *t = PG_GETARG_TEXT_PP(argno);

	*start = (const unsigned char *) VARDATA_ANY(t);
	*end = *start + VARSIZE_ANY_EXHDR(t);
	pz_trim(start, end, pz_db_is_utf8());
}

PG_FUNCTION_INFO_V1(pz_normalize_trim);

/* normalize_trim(text): the value without surrounding whitespace, or NULL */
Datum
pz_normalize_trim(PG_FUNCTION_ARGS)
{
	const unsigned char *s, *e;

	pz_trimmed_arg(fcinfo, 0, &s, &e);
	if (s == e)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len((const char *) s, e - s));
}

/* ---------------------------------------------------------------------
 * email
 * --------------------------------------------------------------------- */

/*
 * Is the character at p one that cannot appear in an address: a control
 * character (C0, DEL, and in UTF-8 C1) or whitespace as pz_space_len knows
 * it?
 */
static bool
pz_email_bad_char(const unsigned char *p, const unsigned char *end, bool utf8)
{
	if (*p < 0x20 || *p == 0x7F)
		return true;
	if (utf8 && p[0] == 0xC2 && end - p >= 2 && p[1] >= 0x80 && p[1] <= 0x9F)
		return true;
	return pz_space_len(p, end, utf8) > 0;
}

/*
 * The normalized address as a palloc'd NUL-terminated string, with the
 * length of its local part, or NULL when the argument is not an address.
 */
static char *
pz_email(FunctionCallInfo fcinfo, int *local_len)
{
	bool utf8 = pz_db_is_utf8();
	const unsigned char *s, *e, *p;
	char *addr;
	int len;
	int at = -1;
	int i;

	pz_trimmed_arg(fcinfo, 0, &s, &e);

	/*
	 * Lowercasing may change the length (KELVIN SIGN, 3 bytes, becomes 'k'),
	 * but never shrinks a character to less than a quarter of its bytes: a
	 * value 4 times too long is refused before the work, the result after.
	 */
	if (s == e || e - s > 4 * PZ_EMAIL_MAX_BYTES)
		return NULL;

	/*
	 * PostgreSQL's own lowercasing in the database's default collation:
	 * normalize_email(x) agrees with lower() on the same database, so an
	 * application comparing lower(email) finds the same identifiers.
	 */
	addr = str_tolower((const char *) s, e - s, DEFAULT_COLLATION_OID);
	len = strlen(addr);
	if (len > PZ_EMAIL_MAX_BYTES)
		return NULL;

	p = (const unsigned char *) addr;
	e = p + len;
	for (i = 0; i < len; i += pg_mblen(addr + i))
	{
		if (pz_email_bad_char(p + i, e, utf8))
			return NULL;
		if (addr[i] == '@')
		{
			if (at >= 0)
				return NULL;
			at = i;
		}
	}
	if (at <= 0 || at == len - 1)
		return NULL;
	/* the domain: no empty label at either end or between dots */
	if (addr[at + 1] == '.' || addr[len - 1] == '.' || strstr(addr + at + 1, "..") != NULL)
		return NULL;
	*local_len = at;
	return addr;
}

PG_FUNCTION_INFO_V1(pz_normalize_email);

/* normalize_email(text): trimmed, lowercased, checked address, or NULL */
Datum
pz_normalize_email(PG_FUNCTION_ARGS)
{
	int local_len;
	char *addr = pz_email(fcinfo, &local_len);

	if (addr == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(addr));
}

PG_FUNCTION_INFO_V1(pz_normalize_email_canonical);

/*
 * normalize_email_canonical(text): normalize_email, then the local part
 * without its +tag (every provider we know of delivers a+tag@ to a@), and
 * for Gmail without dots, under the one domain gmail.com.
 */
Datum
pz_normalize_email_canonical(PG_FUNCTION_ARGS)
{
	int local_len;
	char *addr = pz_email(fcinfo, &local_len);
	const char *domain;
	char *plus;
	StringInfoData out;
	int i;

	if (addr == NULL)
		PG_RETURN_NULL();
	domain = addr + local_len + 1;
	plus = memchr(addr, '+', local_len);
	if (plus != NULL)
		local_len = plus - addr;

	initStringInfo(&out);
	if (strcmp(domain, "gmail.com") == 0 || strcmp(domain, "googlemail.com") == 0)
	{
		for (i = 0; i < local_len; i++)
		{
			if (addr[i] != '.')
				appendStringInfoChar(&out, addr[i]);
		}
		domain = "gmail.com";
	}
	else
		appendBinaryStringInfo(&out, addr, local_len);
	if (out.len == 0)
		PG_RETURN_NULL();
	appendStringInfoChar(&out, '@');
	appendStringInfoString(&out, domain);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}

/* ---------------------------------------------------------------------
 * phone
 * --------------------------------------------------------------------- */

/*
 * Countries whose national numbers do not follow "one trunk '0' before the
 * national number".  Where the length of the national number is fixed, the
 * trunk prefix is dropped only when the digits are exactly that much longer,
 * and any other length is not a number of that country; this keeps the
 * Russian 8 800 ... apart from the national 800 ... and refuses a NANP
 * number without its area code rather than storing a wrong one.
 */
typedef struct PzCountryRule
{
	const char *cc;          /* country calling code, digits */
	const char *trunk;       /* national trunk prefix, "" for none */
	const char *intl_prefix; /* international prefix besides "00", or NULL */
	int national_len;        /* digits of a national number, 0 if it varies */
} PzCountryRule;

static const PzCountryRule pz_country_rules[] = {
	{"1", "1", "011", 10}, /* NANP: 1 (415) 555-0123, 011 for abroad */
	{"7", "8", NULL, 10},  /* Russia, Kazakhstan: 8 (495) 123-45-67 */
	{"36", "06", NULL, 0}, /* Hungary: 06 1 234 5678 */
	{"39", "", NULL, 0},   /* Italy: the leading 0 is part of the number */
	{"378", "", NULL, 0},  /* San Marino: likewise */
};

static const PzCountryRule pz_default_rule = {NULL, "0", NULL, 0};

static const PzCountryRule *
pz_country_rule(const char *cc)
{
	int i;

	for (i = 0; i < lengthof(pz_country_rules); i++)
	{
		if (strcmp(pz_country_rules[i].cc, cc) == 0)
			return &pz_country_rules[i];
	}
	return &pz_default_rule;
}

/*
 * The country code argument as 1..3 digits (into cc[4]), or an error: a
 * wrong country code is a mistake in the caller's setup, and returning NULL
 * would silently drop every phone identifier.
 */
static void
pz_country_code_arg(FunctionCallInfo fcinfo, int argno, char *cc)
{
	text *t = PG_GETARG_TEXT_PP(argno);
	const char *p = VARDATA_ANY(t);
	int len = VARSIZE_ANY_EXHDR(t);
	int i = 0;
	int n = 0;

	if (len > 0 && p[0] == '+')
		i = 1;
	for (; i < len && n < 4 && p[i] >= '0' && p[i] <= '9'; i++)
		cc[n++] = p[i];
	if (i < len || n < 1 || n > 3 || cc[0] == '0')
	{
		int shown = pg_mbcliplen(p, len, 20);

		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("invalid country code \"%.*s%s\" for normalize_phone", shown, p,
							   shown < len ? "..." : ""),
						errhint("Pass the country calling code as 1 to 3 digits, optionally "
								"after '+', such as '44' or '+1'.")));
	}
	cc[n] = '\0';
}

/* Is the character at p a separator inside a phone number?  Its length, or 0. */
static int
pz_phone_separator_len(const unsigned char *p, const unsigned char *end, bool utf8)
{
	int n;

	if (*p == '.' || *p == '-' || *p == '(' || *p == ')' || *p == '/')
		return 1;
	if ((n = pz_space_len(p, end, utf8)) > 0)
		return n;
	/* the dashes of word processors: U+2010..U+2015 and the minus U+2212 */
	if (utf8 && end - p >= 3 && p[0] == 0xE2 &&
		((p[1] == 0x80 && p[2] >= 0x90 && p[2] <= 0x95) || (p[1] == 0x88 && p[2] == 0x92)))
		return 3;
	return 0;
}

/*
 * Normalize a phone number to E.164 "+<digits>" (palloc'd), or return NULL.
 * cc is the country code for numbers written without an international
 * prefix, or NULL when the country is unknown (then such numbers are NULL).
 */
static char *
pz_phone(FunctionCallInfo fcinfo, const char *cc)
{
	bool utf8 = pz_db_is_utf8();
	const PzCountryRule *rule = cc ? pz_country_rule(cc) : &pz_default_rule;
	const unsigned char *s, *e;
	/* room for "00" or "011", a trunk "0" kept by "(0)", 15 digits and more */
	char digits[PZ_PHONE_MAX_DIGITS + 8];
	int ndigits = 0;
	bool plus = false;
	int prefix = 0; /* digits of the international prefix, once seen */
	char *out;

	pz_trimmed_arg(fcinfo, 0, &s, &e);
	if (e - s > PZ_PHONE_MAX_BYTES)
		return NULL;
	/* RFC 3966 tel: URIs, such as tel:+1-201-555-0123 (no parameters) */
	if (e - s >= 4 && pg_strncasecmp((const char *) s, "tel:", 4) == 0)
		s += 4;
	if (s < e && *s == '+')
	{
		plus = true;
		s++;
	}

	while (s < e)
	{
		int n;

		if (*s >= '0' && *s <= '9')
		{
			if (ndigits == lengthof(digits))
				return NULL;
			digits[ndigits++] = *s++;
			if (!plus && prefix == 0)
			{
				if (ndigits == 2 && memcmp(digits, "00", 2) == 0)
					prefix = 2;
				else if (cc && rule->intl_prefix && ndigits == 3 &&
						 memcmp(digits, rule->intl_prefix, 3) == 0)
					prefix = 3;
			}
			continue;
		}

		/*
		 * "+44 (0)20 7946 0958": the trunk 0 in parentheses is dialled only
		 * from inside the country, so an international number drops it; in
		 * a national number it is the trunk 0 as any other.
		 */
		if (*s == '(' && e - s >= 3 && s[1] == '0' && s[2] == ')' &&
			(plus || (prefix > 0 && ndigits > prefix)))
		{
			s += 3;
			continue;
		}
		if ((n = pz_phone_separator_len(s, e, utf8)) == 0)
			return NULL;
		s += n;
	}

	if (plus || prefix > 0)
	{
		/* the digits after the prefix are the whole number */
		out = palloc(ndigits - prefix + 2);
		out[0] = '+';
		memcpy(out + 1, digits + prefix, ndigits - prefix);
		ndigits -= prefix;
	}
	else
	{
		const char *national = digits;
		int nlen = ndigits;
		int tlen = strlen(rule->trunk);
		int cclen;

		if (cc == NULL)
			return NULL; /* a national number of an unknown country */
		if (rule->national_len > 0)
		{
			if (nlen == rule->national_len + tlen && memcmp(national, rule->trunk, tlen) == 0)
			{
				national += tlen;
				nlen -= tlen;
			}
			else if (nlen != rule->national_len)
				return NULL;
		}
		else if (tlen > 0 && nlen >= tlen && memcmp(national, rule->trunk, tlen) == 0)
		{
			national += tlen;
			nlen -= tlen;
		}
		if (nlen == 0)
			return NULL;
		cclen = strlen(cc);
		ndigits = cclen + nlen;
		if (ndigits > PZ_PHONE_MAX_DIGITS)
			return NULL;
		out = palloc(ndigits + 2);
		out[0] = '+';
		memcpy(out + 1, cc, cclen);
		memcpy(out + 1 + cclen, national, nlen);
	}
	out[ndigits + 1] = '\0';
	if (ndigits < PZ_PHONE_MIN_DIGITS || ndigits > PZ_PHONE_MAX_DIGITS || out[1] == '0')
		return NULL;
	return out;
}

PG_FUNCTION_INFO_V1(pz_normalize_phone);

/* normalize_phone(text): an international number in E.164 form, or NULL */
Datum
pz_normalize_phone(PG_FUNCTION_ARGS)
{
	char *phone = pz_phone(fcinfo, NULL);

	if (phone == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(phone));
}

PG_FUNCTION_INFO_V1(pz_normalize_phone_national);

/* normalize_phone(text, country_code): national numbers of that country too */
Datum
pz_normalize_phone_national(PG_FUNCTION_ARGS)
{
	char cc[4];
	char *phone;

	pz_country_code_arg(fcinfo, 1, cc);
	phone = pz_phone(fcinfo, cc);
	if (phone == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(phone));
}
