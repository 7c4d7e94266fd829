-- Audiences (SPEC §8, src/audience.c, src/audience_condition.c): the SQL
-- surface, the conditions refused and why, memberships kept by rebuild(),
-- merges, splits and forget(), the schedule of time-driven moments, errors
-- of a condition that do not stop anyone, and privileges.  Runs in a
-- database of its own, with the example shop of test/shop/; no streaming
-- worker follows it (test/t/013_audiences.pl streams).
\set regress_db :DBNAME
CREATE DATABASE pz_audiences;
\c pz_audiences
SET client_min_messages = warning;
CREATE EXTENSION personalize;
SET search_path = personalize, public;
SET TimeZone = 'UTC';
\pset null '(null)'
\i test/shop/schema.sql

-- ===== before the view exists ==============================================
SELECT create_audience('early', 'true');

\o /dev/null
\i test/shop/config.sql
\o
INSERT INTO shop.orders VALUES
  (1, 7, 'ann@example.com', 'shoe-b', 'running', 119.90, '2026-03-01 10:15+00'),
  (2, 7, 'ann@example.com', 'sock-1', 'socks',     9.50, '2026-02-01 09:00+00'),
  (3, 8, 'bob@example.com', 'tent-1', 'tents',   249.00, '2026-02-15 12:00+00'),
  (4, 9, 'cy@example.com',  'cap-1',  'caps',     19.00, '2026-02-20 12:00+00');
INSERT INTO shop.support_tickets (email, phone, status, sentiment, opened_at) VALUES
  ('bob@example.com', NULL, 'open', 'negative', '2026-03-02 08:00+00'),
  (NULL, '+49 170 1234567', 'open', 'negative', '2026-03-02 09:00+00');
SELECT rebuild() AS profiles;

-- ===== creating: members at once, entries with why = refresh ================
SELECT create_audience('big_spenders', 'lifetime_value > 100') AS members;
SELECT create_audience('unhappy', $$ticket_sentiment = 'negative'$$) AS members;
SELECT create_audience('repeat_buyers', 'orders >= 2') AS members;
SELECT create_audience('lapsed', $$last_seen < now() - interval '30 days'$$) AS members;
SELECT create_audience('seen_this_year', $$last_seen > now() - interval '400 days'$$) AS members;
SELECT name, condition, owner, timed, errors FROM audiences ORDER BY id;
SELECT audience, count(*) FROM audience_members GROUP BY 1 ORDER BY 1;
SELECT audience, entered, why, count(*) FROM audience_events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
-- every member is exactly who the view says
SELECT a.name,
       (SELECT count(*) FROM audience_members m WHERE m.audience = a.name) AS members,
       (SELECT count(*) FROM profile_view v WHERE CASE a.name
            WHEN 'big_spenders' THEN v.lifetime_value > 100
            WHEN 'unhappy' THEN v.ticket_sentiment = 'negative'
            WHEN 'repeat_buyers' THEN v.orders >= 2
            WHEN 'lapsed' THEN v.last_seen < now() - interval '30 days'
            WHEN 'seen_this_year' THEN v.last_seen > now() - interval '400 days' END) AS in_view
  FROM audiences a ORDER BY a.id;
SELECT in_audience(resolve('customer_id', '7'), 'big_spenders') AS ann_big,
       in_audience(resolve('customer_id', '9'), 'big_spenders') AS cy_big,
       in_audience(resolve('customer_id', '7'), 'no_such_audience') AS unknown,
       in_audience(NULL, 'big_spenders') AS null_profile;
SELECT get_profile('customer_id', '8') -> 'audiences' AS bob;

-- ===== time: the next moment a result changes, exactly ======================
-- lapsed stays true for good: nothing to schedule.  seen_this_year turns
-- false 400 days after the last event, to the microsecond.
SELECT count(*) AS scheduled,
       count(*) FILTER (WHERE d.due = p.last_seen + interval '400 days') AS at_last_seen_plus_400_days
  FROM audience_due d JOIN profiles p ON p.id = d.profile_id;
SELECT count(*) AS profiles FROM profiles;
-- a window: orders_in_30d changes when a bucket leaves the window
SELECT create_audience('ordered_lately', 'orders_in_30d > 0') AS members;
SELECT timed FROM audiences WHERE name = 'ordered_lately';

-- a refresh of one audience keeps another's moment that has passed and
-- waits for the worker (no worker follows this database)
UPDATE audience_due SET due = now() - interval '1 second' WHERE profile_id = resolve('customer_id', '7');
SELECT refresh_audience('lapsed') AS changes;
SELECT due < now() AS passed_moment_kept FROM audience_due WHERE profile_id = resolve('customer_id', '7');

-- ===== conditions refused ===================================================
SELECT create_audience('bad', 'no_such_column > 1');
SELECT create_audience('bad', '(SELECT 1) = 1');
SELECT create_audience('bad', 'orders IN (SELECT 1)');
SELECT create_audience('bad', 'count(*) > 1');
SELECT create_audience('bad', 'sum(orders) OVER () > 1');
SELECT create_audience('bad', 'random() < 0.5');
SELECT create_audience('bad', 'generate_series(1, 2) > 1');
SELECT create_audience('bad', 'orders');
SELECT create_audience('bad', 'true) OR (true');
SELECT create_audience('bad', 'true; DROP TABLE personalize.profiles');
SELECT create_audience('bad', 'true FROM pg_authid');
SELECT create_audience('bad', 'true AS x');
SELECT create_audience('bad', '*');
SELECT create_audience('bad', 'profile_view IS NOT NULL');
SELECT create_audience('bad', '');
SELECT create_audience('bad', NULL);
SELECT create_audience('Bad Name', 'true');
SELECT create_audience('big_spenders', 'true');
-- time read in ways no schedule can follow
SELECT create_audience('bad', 'extract(hour from now()) > 17');
SELECT create_audience('bad', 'last_seen = now()');
SELECT create_audience('bad', 'current_date > last_seen');
SELECT create_audience('bad', 'localtimestamp > last_seen');
SELECT create_audience('bad', $$age(last_seen) > interval '1 day'$$);
SELECT create_audience('bad', $$orders_in_30d > extract(epoch from now())$$);
-- ... and the ways it can: clock moved by intervals, casts, both sides
SELECT create_audience('t1', $$now() - last_seen > interval '4 hours'$$) >= 0 AS ok1,
       create_audience('t2', $$last_seen + interval '1 month' < current_timestamp$$) >= 0 AS ok2,
       create_audience('t3', $$first_seen::date BETWEEN now()::date - 900 AND now()::date$$) >= 0 AS ok3,
       create_audience('t4', $$clock_timestamp() > last_seen AND orders > 0$$) >= 0 AS ok4;
SELECT name, timed FROM audiences WHERE name LIKE 't_' ORDER BY name;
SELECT drop_audience('t1'), drop_audience('t2'), drop_audience('t3'), drop_audience('t4');
SELECT drop_audience('t1');
SELECT drop_audience(NULL);
SELECT alter_audience('big_spenders', NULL);
SELECT alter_audience('no_such', 'true');
SELECT alter_audience('big_spenders', 'nope');
SELECT refresh_audience('no_such');

-- ===== a trait an audience reads cannot go ==================================
SELECT drop_trait('lifetime_value');
SELECT alter_trait('orders_in', windows => '{1 hour}');
SELECT count(*) AS traits_kept FROM traits WHERE name IN ('lifetime_value', 'orders_in');
SELECT drop_trait('bought');
SELECT count(*) AS still_members FROM audience_members;

-- ===== altering: members recomputed, why = refresh ==========================
SELECT alter_audience('big_spenders', 'lifetime_value > 200') AS members;
SELECT audience, profile_id = resolve('customer_id', '7') AS ann, entered, why
  FROM audience_events WHERE audience = 'big_spenders' ORDER BY id;
SELECT refresh_audience('big_spenders') AS nothing_to_change;
-- a change behind the extension's back is found by refresh_audience
UPDATE profiles SET states = '{}' WHERE id = resolve('customer_id', '8');
SELECT refresh_audience('big_spenders') AS changes, refresh_audience('unhappy') AS changes_unhappy;
SELECT rebuild() > 0 AS rebuilt;
SELECT audience, entered, why FROM audience_events WHERE why = 'rebuild' ORDER BY id;
SELECT refresh_audience(name) AS changes FROM audiences ORDER BY id;

-- ===== identity: a merge ends the loser's memberships, re-evaluates the winner
-- the phone's ticket is its own profile, unhappy; linking it to cy merges
SELECT in_audience(resolve('phone', '+49 170 1234567'), 'unhappy') AS phone_unhappy,
       in_audience(resolve('customer_id', '9'), 'unhappy') AS cy_unhappy;
SELECT resolve('phone', '+49 170 1234567') AS phone_profile \gset
SELECT link('customer_id', '9', 'phone', '+49 170 1234567') AS linked;
SELECT resolve('phone', '+49 170 1234567') = resolve('customer_id', '9') AS one_profile,
       in_audience(resolve('customer_id', '9'), 'unhappy') AS cy_unhappy_now;
SELECT audience, profile_id = :phone_profile AS loser, entered, why
  FROM audience_events WHERE why = 'merge' ORDER BY id;
SELECT count(*) AS memberships_of_loser FROM audience_memberships WHERE profile_id = :phone_profile;
SELECT refresh_audience(name) AS changes FROM audiences ORDER BY id;

-- ===== a split re-evaluates both after their rebuild ========================
SELECT split('phone', '+49 170 1234567') AS split_profile \gset
SELECT rebuild(resolve('customer_id', '9')) >= 0 AS rebuilt_cy,
       rebuild(:split_profile) >= 0 AS rebuilt_phone;
SELECT audience, entered, why FROM audience_events WHERE why = 'split' ORDER BY id;
SELECT in_audience(:split_profile, 'unhappy') AS phone_unhappy_again,
       in_audience(resolve('customer_id', '9'), 'unhappy') AS cy_unhappy;
SELECT refresh_audience(name) AS changes FROM audiences ORDER BY id;

-- ===== forget(): the person's events go, one exit each tells consumers ======
SELECT resolve('customer_id', '8') AS bob \gset
SELECT count(*) > 0 AS bob_had_events FROM audience_events WHERE profile_id = :bob;
SELECT relation, removed > 0 AS removed FROM forget('customer_id', '8') WHERE relation LIKE '%audience%';
SELECT audience, entered, why FROM audience_events WHERE profile_id = :bob ORDER BY id;
SELECT count(*) AS bob_memberships FROM audience_memberships WHERE profile_id = :bob;
SELECT count(*) AS bob_scheduled FROM audience_due WHERE profile_id = :bob;

-- ===== an error in a condition costs its profile only =======================
SELECT create_audience('fragile', '100 / (orders - 1) > 0') AS members;
SELECT errors > 0 AS counted, last_error FROM audiences WHERE name = 'fragile';
SELECT count(*) FILTER (WHERE audience = 'fragile') AS fragile_members,
       count(*) FILTER (WHERE audience = 'repeat_buyers') AS repeat_members FROM audience_members;
SELECT rebuild() > 0 AS rebuild_goes_on;
SELECT drop_audience('fragile');

-- ===== privileges: readers read, admins manage, conditions run as their owner
CREATE ROLE pz_aud_reader;
CREATE ROLE pz_aud_admin;
CREATE ROLE pz_aud_nobody;
GRANT personalize_reader TO pz_aud_reader;
GRANT personalize_admin TO pz_aud_admin;
CREATE FUNCTION public.pz_secret_rule(bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 > 0';
REVOKE EXECUTE ON FUNCTION public.pz_secret_rule(bigint) FROM PUBLIC;
SET ROLE pz_aud_nobody;
SELECT count(*) FROM audience_members;
SELECT create_audience('mine', 'true');
SET ROLE pz_aud_reader;
SELECT count(*) > 0 AS reads_members, (SELECT count(*) > 0 FROM audience_events) AS reads_events,
       in_audience(resolve('customer_id', '7'), 'repeat_buyers') AS ann_repeat
  FROM audience_members;
SELECT create_audience('mine', 'true');
SELECT refresh_audience('unhappy');
INSERT INTO audience_memberships VALUES (1, 1, now());
SET ROLE pz_aud_admin;
-- checking runs the condition's immutable functions as the given role: not callable
SELECT _audience_check('true', 'postgres');
SELECT create_audience('mine', 'public.pz_secret_rule(orders)');
SELECT create_audience('mine', 'orders > 0') AS members;
SELECT owner FROM audiences WHERE name = 'mine';
DELETE FROM audience_events;
UPDATE audiences SET condition = 'true';
RESET ROLE;
-- the owner loses the right to read the view: the audience keeps its
-- members and records why, nobody else is stopped
REVOKE personalize_admin FROM pz_aud_admin;
SELECT refresh_audience('mine') AS changes;
SELECT last_error IS NOT NULL AS error_recorded FROM audiences WHERE name = 'mine';
SELECT count(*) > 0 AS members_kept FROM audience_members WHERE audience = 'mine';
SELECT refresh_audience('repeat_buyers') AS others_fine;
SELECT drop_audience('mine');

-- ===== a user's trigger on audience_events still fires ======================
-- Entries and exits are written as catalog code writes rows (src/audience_store.c),
-- unless a table has what only the executor maintains, such as a trigger:
-- then with SQL.  Both ways write the same rows.
CREATE TABLE public.seen_events (id bigint, audience text, profile_id bigint, entered boolean);
CREATE FUNCTION public.note_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.seen_events VALUES (NEW.id, NEW.audience, NEW.profile_id, NEW.entered);
  RETURN NEW;
END $$;
CREATE TRIGGER note_event AFTER INSERT ON audience_events
  FOR EACH ROW EXECUTE FUNCTION public.note_event();
SELECT coalesce(max(id), 0) AS before_trigger FROM audience_events \gset
SET client_min_messages = debug1;
SELECT alter_audience('repeat_buyers', 'orders >= 1') > 0 AS entered_some;
SELECT alter_audience('repeat_buyers', 'orders >= 2') >= 0 AS left_again;
SET client_min_messages = warning;
-- every event written since fired the trigger, entries and exits
SELECT count(*) > 0 AS events,
       count(*) = (SELECT count(*) FROM public.seen_events) AS all_seen,
       count(*) = (SELECT count(*) FROM audience_events e JOIN public.seen_events s USING (id, audience, profile_id, entered)) AS same_rows
  FROM audience_events WHERE id > :before_trigger;
SELECT count(*) FILTER (WHERE entered) > 0 AS entries, count(*) FILTER (WHERE NOT entered) > 0 AS exits
  FROM public.seen_events;
DROP TRIGGER note_event ON audience_events;
-- without it, written directly (DEBUG1 says so): the same entries and
-- exits again, in the same order
SELECT coalesce(max(id), 0) AS before_direct FROM audience_events \gset
SET client_min_messages = debug1;
SELECT alter_audience('repeat_buyers', 'orders >= 1') > 0 AS entered_some;
SELECT alter_audience('repeat_buyers', 'orders >= 2') >= 0 AS left_again;
SET client_min_messages = warning;
SELECT (SELECT array_agg(row(profile_id, entered, why) ORDER BY id) FROM audience_events
         WHERE id > :before_direct)
     = (SELECT array_agg(row(e.profile_id, e.entered, e.why) ORDER BY e.id) FROM audience_events e
         WHERE e.id > :before_trigger AND e.id <= :before_direct) AS same_as_with_sql,
       (SELECT count(*) FROM public.seen_events) = (SELECT count(*) FROM audience_events
         WHERE id > :before_trigger AND id <= :before_direct) AS trigger_gone;
-- a check of yours on audience_events: written with SQL, which checks it
ALTER TABLE audience_events ADD CONSTRAINT positive_profile CHECK (profile_id > 0);
SET client_min_messages = debug1;
SELECT alter_audience('repeat_buyers', 'orders >= 1') > 0 AS entered_some;
SET client_min_messages = warning;
ALTER TABLE audience_events DROP CONSTRAINT positive_profile;
SELECT alter_audience('repeat_buyers', 'orders >= 2') >= 0 AS left_again;
-- a table inheriting from audience_memberships: a DELETE reaches it, so SQL again
CREATE TABLE public.old_members () INHERITS (audience_memberships);
SET client_min_messages = debug1;
SELECT alter_audience('repeat_buyers', 'orders >= 1') > 0 AS entered_some;
SET client_min_messages = warning;
DROP TABLE public.old_members;
SELECT alter_audience('repeat_buyers', 'orders >= 2') >= 0 AS left_again;
-- memberships and events agree: a refresh finds nothing to change
SELECT refresh_audience('repeat_buyers') AS nothing_to_change;
SELECT count(*) = (SELECT count(*) FROM profile_view WHERE orders >= 2) AS members_as_view
  FROM audience_members WHERE audience = 'repeat_buyers';
DROP TABLE public.seen_events;
DROP FUNCTION public.note_event();

-- ===== dropping: memberships go, events stay ================================
SELECT drop_audience('lapsed');
SELECT count(*) AS members_left FROM audience_members WHERE audience = 'lapsed';
SELECT count(*) > 0 AS events_kept FROM audience_events WHERE audience = 'lapsed';

\c :regress_db
DROP DATABASE pz_audiences;
DROP ROLE pz_aud_reader, pz_aud_admin, pz_aud_nobody;
