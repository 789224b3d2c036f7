-- A campaign whose advertiser is neither in this sweep nor already in brands cannot become an
-- offer (offers.brand_id is a real foreign key): reject it with the id it pointed at.
UPDATE {campaigns} AS s
SET status = 'rejected',
    reject_reason = 'advertiserId: ' || left(s.advertiser_ref, 128)
                    || ' matches no advertiser in this sweep or in brands'
WHERE s.status = 'valid'
  AND NOT EXISTS (SELECT 1 FROM {aliases} AS a WHERE a.alias = s.advertiser_ref)
