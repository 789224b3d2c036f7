-- Fresh statistics for the planner (the tables were just bulk-loaded), and a clean alias table.
ANALYZE {advertisers}, {campaigns};
DROP TABLE IF EXISTS {aliases}
