-- Every function, aggregate, type, table and view a user sees has a comment,
-- so that \df+, \dT+ and \d+ explain it.  (Names that start with an
-- underscore are the extension's internals; objects other tests create in
-- the schema are not the extension's.)
CREATE FUNCTION pg_temp.member(classid regclass, objid oid) RETURNS boolean LANGUAGE sql
RETURN EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.classid = member.classid AND d.objid = member.objid AND d.deptype = 'e'
                  AND d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'personalize'));
SELECT 'function ' || p.oid::regprocedure AS without_comment
  FROM pg_proc p
 WHERE p.pronamespace = 'personalize'::regnamespace AND p.proname !~ '^_'
   AND obj_description(p.oid, 'pg_proc') IS NULL AND pg_temp.member('pg_proc', p.oid)
UNION ALL
SELECT 'type ' || t.oid::regtype
  FROM pg_type t
 WHERE t.typnamespace = 'personalize'::regnamespace AND t.typname !~ '^_'
   AND obj_description(t.oid, 'pg_type') IS NULL AND pg_temp.member('pg_type', t.oid)
   AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
UNION ALL
SELECT 'relation ' || c.oid::regclass
  FROM pg_class c
 WHERE c.relnamespace = 'personalize'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p')
   AND obj_description(c.oid, 'pg_class') IS NULL
   AND (pg_temp.member('pg_class', c.oid) OR c.relname = 'profile_view')
ORDER BY 1;
