/*
 * field.c
 *	  How a source's column becomes the text of an event field: one
 *	  decision for the output plugin and for the SQL of rebuild().
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
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
