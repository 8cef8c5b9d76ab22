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

/** A field picked from a list: fixed, or looked up through the data source. */
interface PickSpec {
  kind: 'pick';
  label: string;
  width: number;
  placeholder: string;
  tooltip?: string;
  /** custom allows a value the list does not have (typed, or a template variable). */
  custom?: boolean;
  options: (ds: DataSource) => Array<ComboboxOption<string>> | ((input: string) => Promise<Array<ComboboxOption<string>>>);
}

/** A field typed as text, run when it loses focus. */
interface TextSpec {
  kind: 'text';
  label: string;
  width: number;
  placeholder?: string;
  tooltip?: string;
  valid?: (v?: string) => boolean;
  error?: string;
}

/** How the editor shows each text field of a query (the selector has its own). */
const FIELDS: Record<Exclude<TextField, 'selector'>, PickSpec | TextSpec> = {
  service: {
    kind: 'pick',
    label: 'Service',
    width: 32,
    tooltip: 'The service.name of the resource',
    custom: true,
    placeholder: 'any service',
    options: (ds) => loader(() => ds.services()),
  },
  status: { kind: 'pick', label: 'Status', width: 24, placeholder: 'any status', options: () => toOptions(STATUSES) },
  severity: { kind: 'pick', label: 'Severity', width: 24, placeholder: 'any severity', options: () => toOptions(SEVERITIES) },
  runbook: {
    kind: 'pick',
    label: 'Runbook',
    width: 32,
    tooltip: 'Only the runs of this runbook',
    custom: true,
    placeholder: 'any runbook',
    options: (ds) => loader(() => ds.runbooks()),
  },
  minScore: {
    kind: 'text',
    label: 'Min score',
    width: 16,
    placeholder: 'e.g. 3',
    tooltip: 'Only anomalies scoring at least this',
  },
  minSeverity: {
    kind: 'pick',
    label: 'Min severity',
    width: 24,
    custom: true,
    placeholder: 'any severity',
    options: () => toOptions(LOG_SEVERITIES),
  },
  contains: { kind: 'text', label: 'Contains', width: 40, tooltip: 'The body contains this text' },
  regexp: { kind: 'text', label: 'Regexp', width: 40, tooltip: 'The body matches this RE2 expression' },
  traceId: {
    kind: 'text',
    label: 'Trace ID',
    width: 40,
    tooltip: '1 to 32 hex digits',
    valid: (v) => validTraceID(v),
    error: 'A trace id is 1 to 32 hex digits',
  },
};

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
    if (f === 'limit') {
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
      continue;
    }
    if (f === 'selector') {
      rows.push(
        <SelectorField
          key={f}
          datasource={datasource}
          selector={query.selector ?? ''}
          onChange={(selector, run) => set({ selector }, run)}
        />
      );
      continue;
    }
    const spec = FIELDS[f];
    const id = 'query-editor-' + f.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
    const value = query[f];
    rows.push(
      <InlineField
        key={f}
        label={spec.label}
        labelWidth={LABEL_WIDTH}
        tooltip={spec.tooltip}
        invalid={spec.kind === 'text' && spec.valid ? !spec.valid(value) : undefined}
        error={spec.kind === 'text' ? spec.error : undefined}
      >
        {spec.kind === 'pick' ? (
          <Combobox
            id={id}
            aria-label={spec.label}
            width={spec.width}
            isClearable
            createCustomValue={spec.custom}
            placeholder={spec.placeholder}
            value={asOption(value)}
            options={spec.options(datasource)}
            onChange={pick(f)}
          />
        ) : (
          <Input
            id={id}
            aria-label={spec.label}
            width={spec.width}
            placeholder={spec.placeholder}
            value={value ?? ''}
            onChange={text(f)}
            onBlur={onRunQuery}
          />
        )}
      </InlineField>
    );
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
