-- Statistics on the columns searched together, so that PostgreSQL estimates how many index
-- rows one value has. Without them it multiplied the selectivities of `param_id` and of the
-- value as if they were independent: 11,325 rows expected for `category = vital-signs`
-- (49,210 in fact) and 451 for one LOINC code (6,595), at 153,000 resources; it then hashed
-- the value's rows where probing the patient's rows was cheaper, and the reverse. With the
-- most common combinations (mcv) and the distinct counts of the combinations (ndistinct), the
-- estimates are within 15%. ANALYZE (and autovacuum's analyses after it) fills them.
CREATE STATISTICS search_token_value_stats (mcv, ndistinct)
    ON param_id, code, system FROM search_token;
CREATE STATISTICS search_reference_target_stats (mcv, ndistinct)
    ON param_id, target_id, target_type FROM search_reference;
CREATE STATISTICS search_string_value_stats (mcv, ndistinct)
    ON param_id, normalized FROM search_string;
ANALYZE search_token, search_reference, search_string;
