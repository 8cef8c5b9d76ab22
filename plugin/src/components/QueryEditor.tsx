import React, { ChangeEvent, useState } from 'react';
import { QueryEditorProps } from '@grafana/data';
import { Combobox, ComboboxOption, InlineField, InlineFieldRow, Input, RadioButtonGroup, Stack } from '@grafana/ui';

import { DataSource } from '../datasource';
import { withMatcher } from '../selector';
import { AiopsOptions, AiopsQuery, QUERY_FIELDS, QUERY_TYPES, QueryType, TextField } from '../types';

type Props = QueryEditorProps<DataSource, AiopsQuery, AiopsOptions>;

const LABEL_WIDTH = 14;

const STATUSES = ['open', 'acknowledged', 'resolved'];
const SEVERITIES = ['info', 'warning', 'critical'];
const LOG_SEVERITIES = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

const toOptions = (values: string[], filter = ''): Array<ComboboxOption<string>> =>
  values.filter((v) => v.toLowerCase().includes(filter.toLowerCase())).map((v) => ({ label: v, value: v }));

/**
 * loader turns one of the data source's look-ups into a Combobox's
 * options; a failed look-up leaves the list empty (a value can still be
 * typed) rather than breaking the editor.
 */
const loader =
  (load: () => Promise<string[]>) =>
  (input: string): Promise<Array<ComboboxOption<string>>> =>
    load().then(
      (values) => toOptions(values, input),
      () => []
    );

const asOption = (v?: string): ComboboxOption<string> | null => (v ? { label: v, value: v } : null);

/** The query editor: the query type, then the fields that type reads. */
export function QueryEditor({ query, onChange, onRunQuery, datasource }: Props) {
  const queryType: QueryType = query.queryType ?? 'incidents';
  const fields = QUERY_FIELDS[queryType];

  const set = (patch: Partial<AiopsQuery>, run = false) => {
    onChange({ ...query, ...patch });
    if (run) {
      onRunQuery();
    }
  };
  const text = (key: TextField) => (e: ChangeEvent<HTMLInputElement>) => set({ [key]: e.target.value });
  const pick = (key: TextField) => (o: ComboboxOption<string> | null) => set({ [key]: o?.value ?? '' }, true);

  const rows: React.ReactNode[] = [];
  for (const f of fields) {
    switch (f) {
      case 'service':
        rows.push(
          <InlineField key={f} label="Service" labelWidth={LABEL_WIDTH} tooltip="The service.name of the resource">
            <Combobox
              id="query-editor-service"
              aria-label="Service"
              width={32}
              isClearable
              createCustomValue
              placeholder="any service"
              value={asOption(query.service)}
              options={loader(() => datasource.services())}
              onChange={pick('service')}
            />
          </InlineField>
        );
        break;
      case 'status':
        rows.push(
          <InlineField key={f} label="Status" labelWidth={LABEL_WIDTH}>
            <Combobox
              id="query-editor-status"
              aria-label="Status"
              width={24}
              isClearable
              placeholder="any status"
              value={query.status || null}
              options={toOptions(STATUSES)}
              onChange={pick('status')}
            />
          </InlineField>
        );
        break;
      case 'severity':
        rows.push(
          <InlineField key={f} label="Severity" labelWidth={LABEL_WIDTH}>
            <Combobox
              id="query-editor-severity"
              aria-label="Severity"
              width={24}
              isClearable
              placeholder="any severity"
              value={query.severity || null}
              options={toOptions(SEVERITIES)}
              onChange={pick('severity')}
            />
          </InlineField>
        );
        break;
      case 'runbook':
        rows.push(
          <InlineField key={f} label="Runbook" labelWidth={LABEL_WIDTH} tooltip="Only the runs of this runbook">
            <Combobox
              id="query-editor-runbook"
              aria-label="Runbook"
              width={32}
              isClearable
              createCustomValue
              placeholder="any runbook"
              value={asOption(query.runbook)}
              options={loader(() => datasource.runbooks())}
              onChange={pick('runbook')}
            />
          </InlineField>
        );
        break;
      case 'selector':
        rows.push(
          <SelectorField
            key={f}
            datasource={datasource}
            selector={query.selector ?? ''}
            onChange={(selector, run) => set({ selector }, run)}
          />
        );
        break;
      case 'minScore':
        rows.push(
          <InlineField key={f} label="Min score" labelWidth={LABEL_WIDTH} tooltip="Only anomalies scoring at least this">
            <Input
              id="query-editor-min-score"
              aria-label="Min score"
              width={16}
              placeholder="e.g. 3"
              value={query.minScore ?? ''}
              onChange={text('minScore')}
              onBlur={onRunQuery}
            />
          </InlineField>
        );
        break;
      case 'minSeverity':
        rows.push(
          <InlineField key={f} label="Min severity" labelWidth={LABEL_WIDTH}>
            <Combobox
              id="query-editor-min-severity"
              aria-label="Min severity"
              width={24}
              isClearable
              createCustomValue
              placeholder="any severity"
              value={query.minSeverity || null}
              options={toOptions(LOG_SEVERITIES)}
              onChange={pick('minSeverity')}
            />
          </InlineField>
        );
        break;
      case 'contains':
        rows.push(
          <InlineField key={f} label="Contains" labelWidth={LABEL_WIDTH} tooltip="The body contains this text">
            <Input
              id="query-editor-contains"
              aria-label="Contains"
              width={40}
              value={query.contains ?? ''}
              onChange={text('contains')}
              onBlur={onRunQuery}
            />
          </InlineField>
        );
        break;
      case 'regexp':
        rows.push(
          <InlineField key={f} label="Regexp" labelWidth={LABEL_WIDTH} tooltip="The body matches this RE2 expression">
            <Input
              id="query-editor-regexp"
              aria-label="Regexp"
              width={40}
              value={query.regexp ?? ''}
              onChange={text('regexp')}
              onBlur={onRunQuery}
            />
          </InlineField>
        );
        break;
      case 'traceId':
        rows.push(
          <InlineField
            key={f}
            label="Trace ID"
            labelWidth={LABEL_WIDTH}
            tooltip="1 to 32 hex digits"
            invalid={!validTraceID(query.traceId)}
            error="A trace id is 1 to 32 hex digits"
          >
            <Input
              id="query-editor-trace-id"
              aria-label="Trace ID"
              width={40}
              value={query.traceId ?? ''}
              onChange={text('traceId')}
              onBlur={onRunQuery}
            />
          </InlineField>
        );
        break;
      case 'limit':
        rows.push(
          <InlineField key={f} label="Limit" labelWidth={LABEL_WIDTH} tooltip="Most rows to read; empty for the default">
            <Input
              id="query-editor-limit"
              aria-label="Limit"
              type="number"
              min={0}
              width={16}
              value={query.limit ?? ''}
              onChange={(e: ChangeEvent<HTMLInputElement>) => {
                const n = Number.parseInt(e.target.value, 10);
                set({ limit: Number.isFinite(n) && n > 0 ? n : undefined });
              }}
              onBlur={onRunQuery}
            />
          </InlineField>
        );
        break;
    }
  }

  return (
    <Stack direction="column" gap={1}>
      <InlineField label="Query type" labelWidth={LABEL_WIDTH}>
        <RadioButtonGroup<QueryType>
          size="sm"
          options={QUERY_TYPES}
          value={queryType}
          onChange={(v) => set({ queryType: v }, true)}
        />
      </InlineField>
      <InlineFieldRow>{rows}</InlineFieldRow>
    </Stack>
  );
}

/** validTraceID accepts an empty id (not written yet) or 1 to 32 hex digits, as the backend does. */
export function validTraceID(id?: string): boolean {
  const s = (id ?? '').trim();
  return s === '' || /^[0-9a-fA-F]{1,32}$/.test(s) || s.startsWith('$');
}

interface SelectorProps {
  datasource: DataSource;
  selector: string;
  onChange: (selector: string, run: boolean) => void;
}

/**
 * The series selector, typed or built: a label (from the stored label
 * names) and one of its values put label="value" into the selector.
 */
function SelectorField({ datasource, selector, onChange }: SelectorProps) {
  const [label, setLabel] = useState<string>('');
  return (
    <>
      <InlineField
        label="Selector"
        labelWidth={LABEL_WIDTH}
        tooltip='A label selector such as {aiops_metric="http_server_request_duration_seconds"}'
        invalid={selector.trim() !== '' && !selector.trim().startsWith('{') && !selector.trim().startsWith('$')}
        error="A selector is a label selector in braces"
      >
        <Input
          id="query-editor-selector"
          aria-label="Selector"
          width={56}
          placeholder='{aiops_metric="http_server_request_duration_seconds"}'
          value={selector}
          onChange={(e: ChangeEvent<HTMLInputElement>) => onChange(e.target.value, false)}
          onBlur={() => onChange(selector, true)}
        />
      </InlineField>
      <InlineField label="Label" labelWidth={LABEL_WIDTH} tooltip="Pick a label, then a value to match">
        <Combobox
          id="query-editor-label"
          aria-label="Label"
          width={28}
          isClearable
          createCustomValue
          placeholder="label"
          value={asOption(label)}
          options={loader(() => datasource.labels())}
          onChange={(o) => setLabel(o?.value ?? '')}
        />
      </InlineField>
      <InlineField label="Value" labelWidth={8} disabled={label === ''}>
        <Combobox
          // A new label gives a new list of values.
          key={label}
          id="query-editor-label-value"
          aria-label="Label value"
          width={32}
          createCustomValue
          disabled={label === ''}
          placeholder="value"
          value={null}
          options={loader(() => datasource.labelValues(label))}
          onChange={(o) => onChange(withMatcher(selector, label, o.value), true)}
        />
      </InlineField>
    </>
  );
}
