/*
 * field.c
 *	  How a source's column becomes the text of an event field: one
 *	  decision for the output plugin and for the SQL of rebuild().
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "access/transam.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/regproc.h"

#include "field.h"

FieldTextHow
pz_field_text_how(Oid type, Oid *fn, bool *user_cast)
{
	Oid funcid = InvalidOid;
	bool varlena;

	*user_cast = false;
	switch (find_coercion_pathway(TEXTOID, type, COERCION_EXPLICIT, &funcid))
	{
		case COERCION_PATH_RELABELTYPE:
			return FIELD_AS_IS;
		case COERCION_PATH_FUNC:
			/* built-in casts only: a user's cast function is user code */
			if (funcid < FirstNormalObjectId)
			{
				*fn = funcid;
				return FIELD_CAST_FUNC;
			}
			*user_cast = true;
			break;
		default:
			break;
	}
	getTypeOutputInfo(type, fn, &varlena);
	return FIELD_OUTPUT;
}

PG_FUNCTION_INFO_V1(pz_column_text_sql);

/*
 * _column_text_sql(relation, column): the SQL expression that reads column
 * of the row alias "e" as the stream reads it, e.g. (e."sku")::text, or
 * pg_catalog.textin(pg_catalog.enum_out(e."tier")) for an enum with a
 * user's cast to text.  NULL if the column does not exist.
 */
Datum
pz_column_text_sql(PG_FUNCTION_ARGS)
{
	Oid relid = PG_GETARG_OID(0);
	char *column = NameStr(*PG_GETARG_NAME(1));
	AttrNumber attnum = get_attnum(relid, column);
	Oid type, fn = InvalidOid;
	bool user_cast;
	const char *col;

	if (attnum == InvalidAttrNumber)
		PG_RETURN_NULL();
	type = get_atttype(relid, attnum);
	col = quote_identifier(column);
	/* ::text is the same reading unless it would call a user's cast */
	(void) pz_field_text_how(type, &fn, &user_cast);
	if (user_cast)
	{
		/* the output function's name, schema-qualified, as regprocedure prints it */
		char *out = format_procedure_qualified(fn);
		char *paren = strchr(out, '(');

		if (paren != NULL)
			*paren = '\0';
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("pg_catalog.textin(%s(e.%s))", out, col)));
	}
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("(e.%s)::text", col)));
}

/*
 * A field's text as a number: blanks, a sign, digits with one point, an
 * exponent within +-1000.  Most fields (amounts, quantities) have at most 18
 * digits and no exponent: their digits, read as an int64 scaled by a power of
 * ten, give the Numeric without numeric_in (the same value and scale, "1.50"
 * stays 1.50; numeric_in was a tenth of the stream's fold of an order).
 */
bool
pz_field_number(const char *v, int32 len, Numeric *num, double *f)
{
	int i = 0, digits = 0, expdigits = 0, scale = 0;
	char *s;
	long exp = 0;
	bool neg = false;
	int64 whole = 0;

	while (i < len && isspace((unsigned char) v[i]))
		i++;
	if (i < len && (v[i] == '+' || v[i] == '-'))
		neg = v[i++] == '-';
	while (i < len && isdigit((unsigned char) v[i]))
	{
		if (digits < 18)
			whole = whole * 10 + (v[i] - '0');
		i++, digits++;
	}
	if (i < len && v[i] == '.')
	{
		i++;
		while (i < len && isdigit((unsigned char) v[i]))
		{
			if (digits < 18)
				whole = whole * 10 + (v[i] - '0');
			i++, digits++, scale++;
		}
	}
	if (digits == 0)
		return false;
	if (i < len && (v[i] == 'e' || v[i] == 'E'))
	{
		int sign = 1;

		i++;
		if (i < len && (v[i] == '+' || v[i] == '-'))
			sign = v[i++] == '-' ? -1 : 1;
		while (i < len && isdigit((unsigned char) v[i]))
			exp = exp * 10 + (v[i++] - '0'), expdigits++;
		if (expdigits == 0 || expdigits > 4)
			return false;
		exp *= sign;
	}
	while (i < len && isspace((unsigned char) v[i]))
		i++;
	if (i != len || exp > 1000 || exp < -1000)
		return false;
	if (num != NULL && f == NULL && expdigits == 0 && digits <= 18)
	{
		*num = int64_div_fast_to_numeric(neg ? -whole : whole, scale);
		return true;
	}
	s = pnstrdup(v, len);
	if (f != NULL)
	{
		errno = 0;
		*f = strtod(s, NULL);
		if (errno == ERANGE || isinf(*f))
			return false;
	}
	if (num != NULL)
		*num = DatumGetNumeric(DirectFunctionCall3(
			numeric_in, CStringGetDatum(s), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	return true;
}

PG_FUNCTION_INFO_V1(pz_field_number_sql);

/* _field_number(text): the value as numeric as the stream reads it, or NULL */
Datum
pz_field_number_sql(PG_FUNCTION_ARGS)
{
	text *t = PG_GETARG_TEXT_PP(0);
	Numeric num;

	if (!pz_field_number(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &num, NULL))
		PG_RETURN_NULL();
	PG_RETURN_NUMERIC(num);
}

PG_FUNCTION_INFO_V1(pz_field_float8_sql);

/* _field_float8(text): the value as float8 as the stream reads it, or NULL */
Datum
pz_field_float8_sql(PG_FUNCTION_ARGS)
{
	text *t = PG_GETARG_TEXT_PP(0);
	double f;

	if (!pz_field_number(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), NULL, &f))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(f);
}

bool
pz_json_depth_ok(const char *s, int len)
{
	int depth = 0;
	bool in_string = false;

	for (int i = 0; i < len; i++)
	{
		char c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			if (++depth > PZ_JSON_MAX_DEPTH)
				return false;
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return true;
}

PG_FUNCTION_INFO_V1(pz_json_depth_ok_sql);

/* _json_depth_ok(json): the same test for rebuild(): a deeper value is no event there either */
Datum
pz_json_depth_ok_sql(PG_FUNCTION_ARGS)
{
	text *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_BOOL(pz_json_depth_ok(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}
