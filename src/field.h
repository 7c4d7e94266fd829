/*
 * field.h
 *	  How a source's column becomes the text of an event field, one reading
 *	  for the stream (decoder.c) and rebuild() (the SQL _source_part_sql
 *	  builds), so that both paths fold the same values.
 */
#ifndef PERSONALIZE_FIELD_H
#define PERSONALIZE_FIELD_H

#include "postgres.h"

#include "utils/numeric.h"

/* how a column of some type becomes text */
typedef enum FieldTextHow
{
	FIELD_AS_IS,     /* text-like: binary-compatible with text */
	FIELD_CAST_FUNC, /* a built-in cast function to text (bool, bpchar, inet, ...) */
	FIELD_OUTPUT     /* the type's output function */
} FieldTextHow;

/*
 * The reading of a column of type (domains read as their base type); *fn
 * the function to call for FIELD_CAST_FUNC and FIELD_OUTPUT.  A cast to
 * text that a user created (CREATE CAST ... WITH FUNCTION, on an enum of
 * their own) is never called: it would run a user's code with the rights
 * of whoever reads, the worker's bootstrap superuser among them.  Such a
 * type reads through its output function, as it would with no cast, and
 * *user_cast says so.
 */
extern FieldTextHow pz_field_text_how(Oid type, Oid *fn, bool *user_cast);

/*
 * A field's text as a number, for sum, min, max and windowed_sum, in the
 * stream and in rebuild() (_field_number, _field_float8): optional blanks
 * and sign, digits with at most one point, an exponent of at most four
 * digits within +-1000, blanks.  Anything else, and what numeric (num) or
 * float8 (f) cannot hold, is not a number: false.  num and f may be NULL.
 */
extern bool pz_field_number(const char *v, int32 len, Numeric *num, double *f);

/*
 * Whether a json text nests arrays and objects at most PZ_JSON_MAX_DEPTH
 * deep, counted without recursion.  Reading a key parses the whole
 * document recursively, and a document nested as deep as json input allows
 * can exhaust the stack of the worker's decoding, which would fail at that
 * row after every restart: such a row is a dead letter instead.
 */
#define PZ_JSON_MAX_DEPTH 1000
extern bool pz_json_depth_ok(const char *s, int len);

#endif /* PERSONALIZE_FIELD_H */
