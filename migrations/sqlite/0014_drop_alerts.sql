-- The alerts table is no longer kept: every alert's state is derived from the stored
-- receipts, which hold every copy Alertmanager sent (storage::alerts_of_receipts). The
-- incident worker wrote each alert there as well as into incident_alerts and the log;
-- dropping it cut the worker's write per alert by a third. Nothing is lost: the table
-- only ever held what the receipts do.
DROP TABLE alerts;
