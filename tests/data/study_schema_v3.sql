-- The tables that stylex-suite's study code of schema version 3 created (commit 410bbbe), dumped from a database it
-- made: tests build a file of that version from it to test `stylex study upgrade`.

CREATE TABLE study (
	id VARCHAR(64) NOT NULL,
	name TEXT NOT NULL,
	created_at VARCHAR(32) NOT NULL,
	manifest_sha256 VARCHAR(64) NOT NULL,
	PRIMARY KEY (id)
);
CREATE TABLE schema_version (
	version INTEGER NOT NULL,
	PRIMARY KEY (version)
);
CREATE TABLE asset (
	asset_id VARCHAR(128) NOT NULL,
	study_id VARCHAR(64) NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	relpath TEXT NOT NULL,
	method TEXT,
	domain TEXT,
	attr_rank INTEGER,
	role TEXT,
	PRIMARY KEY (asset_id),
	FOREIGN KEY(study_id) REFERENCES study (id),
	UNIQUE (sha256)
);
CREATE INDEX ix_asset_study_id ON asset (study_id);
CREATE TABLE participant (
	id INTEGER NOT NULL,
	study_id VARCHAR(64) NOT NULL,
	external_pid VARCHAR(128) NOT NULL,
	part VARCHAR(16) NOT NULL,
	status VARCHAR(16) NOT NULL,
	seed INTEGER NOT NULL,
	consent_at VARCHAR(32) NOT NULL,
	started_at VARCHAR(32),
	completed_at VARCHAR(32),
	completion_code VARCHAR(64),
	session_token VARCHAR(64),
	platform_session_id VARCHAR(128),
	comprehension_tries INTEGER DEFAULT 0 NOT NULL,
	comprehension_passed_at VARCHAR(32),
	PRIMARY KEY (id),
	CONSTRAINT uq_participant_study_pid UNIQUE (study_id, external_pid),
	CONSTRAINT ck_participant_part CHECK (part IN ('coherence', 'description', 'forward')),
	CONSTRAINT ck_participant_status CHECK (status IN ('consented', 'in_progress', 'completed', 'screened_out')),
	FOREIGN KEY(study_id) REFERENCES study (id)
);
CREATE TABLE study_item (
	item_id VARCHAR(128) NOT NULL,
	study_id VARCHAR(64) NOT NULL,
	part INTEGER NOT NULL,
	kind VARCHAR(16) NOT NULL,
	method TEXT,
	domain TEXT,
	attr_i INTEGER,
	attr_j INTEGER,
	assets TEXT NOT NULL,
	correct_option VARCHAR(1),
	target_class TEXT,
	classifier_decision TEXT,
	PRIMARY KEY (item_id),
	CONSTRAINT ck_item_part CHECK (part IN (1, 2, 3)),
	CONSTRAINT ck_item_correct CHECK (correct_option IS NULL OR correct_option IN ('A', 'B')),
	FOREIGN KEY(study_id) REFERENCES study (id)
);
CREATE INDEX ix_study_item_study_id ON study_item (study_id);
CREATE TABLE trial (
	id INTEGER NOT NULL,
	participant_id INTEGER NOT NULL,
	seq INTEGER NOT NULL,
	kind VARCHAR(16) NOT NULL,
	shown_at VARCHAR(32),
	method TEXT,
	domain TEXT,
	attr_i INTEGER,
	attr_j INTEGER,
	assets TEXT NOT NULL,
	correct_option VARCHAR(1),
	target_class TEXT,
	classifier_decision TEXT,
	PRIMARY KEY (id),
	CONSTRAINT uq_trial_participant_seq UNIQUE (participant_id, seq),
	CONSTRAINT ck_trial_kind CHECK (kind IN ('practice', 'main', 'attention', 'learn')),
	CONSTRAINT ck_trial_correct CHECK (correct_option IS NULL OR correct_option IN ('A', 'B')),
	FOREIGN KEY(participant_id) REFERENCES participant (id)
);
CREATE TABLE event (
	id INTEGER NOT NULL,
	participant_id INTEGER,
	ts VARCHAR(32) NOT NULL,
	kind VARCHAR(64) NOT NULL,
	detail TEXT,
	PRIMARY KEY (id),
	FOREIGN KEY(participant_id) REFERENCES participant (id)
);
CREATE INDEX ix_event_participant_id ON event (participant_id);
CREATE TABLE response (
	id INTEGER NOT NULL,
	trial_id INTEGER NOT NULL,
	choice VARCHAR(1),
	text_raw TEXT,
	text_norm TEXT,
	submitted_at VARCHAR(32) NOT NULL,
	rt_ms INTEGER,
	prediction TEXT,
	PRIMARY KEY (id),
	CONSTRAINT ck_response_choice CHECK (choice IS NULL OR choice IN ('A', 'B')),
	UNIQUE (trial_id),
	FOREIGN KEY(trial_id) REFERENCES trial (id)
);
INSERT INTO schema_version (version) VALUES (3);
