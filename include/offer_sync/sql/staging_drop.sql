-- Drop one run's staging tables (after its merge, or when a later run finds them left over).
DROP TABLE IF EXISTS {advertisers}, {campaigns}, {aliases}, {tries}, {known}
