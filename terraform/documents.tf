# Documents people keep (receipts, bills, statements as PDF or CSV): the worker renders them,
# writes them under documents/ in this bucket and hands clients presigned GET links. Nobody else
# reads the bucket: a link is signed by the worker's role, and S3 checks that role's rights when
# the link is used. The worker reaches S3 through the gateway endpoint (network.tf) and may put and
# get objects under documents/ only (iam.tf). README.md, "Documents (S3)".

resource "aws_s3_bucket" "documents" {
  #checkov:skip=CKV_AWS_18:The worker's role is the one principal with access (it writes every object and signs every link); server access logs need a second bucket (SSE-S3 only) whose own logging check would be skipped in turn. CloudTrail S3 data events are the account-wide way to record each read (README.md, "Documents (S3)").
  #checkov:skip=CKV_AWS_144:The stack lives in one region, its database included; versioning keeps every version written, and the worker cannot delete.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to a new document: the worker that wrote it hands out the link itself.
  #checkov:skip=CKV_AWS_143:No Object Lock: its compliance mode would keep the stack from being torn down for the retention's ten years. Documents are protected by versioning, a worker role with no s3:DeleteObject and a bucket nobody else is granted.
  bucket = local.documents_bucket_name

  lifecycle {
    precondition {
      condition     = length(local.documents_bucket_name) <= 63
      error_message = "The documents bucket's name (<name>-documents-<account>-<region>) is longer than S3's 63 characters: choose a shorter name."
    }
  }
}

resource "aws_s3_bucket_public_access_block" "documents" {
  bucket = aws_s3_bucket.documents.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ACLs disabled: the account owns every object, and only policies grant access.
resource "aws_s3_bucket_ownership_controls" "documents" {
  bucket = aws_s3_bucket.documents.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# The stack's data key, with an S3 Bucket Key: S3 asks KMS for a key per bucket now and then
# instead of one per object, and the encryption context is the bucket's ARN (iam.tf relies on it).
resource "aws_s3_bucket_server_side_encryption_configuration" "documents" {
  bucket = aws_s3_bucket.documents.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
    bucket_key_enabled = true
  }
}

# A document is an immutable record: a write over one keeps the old version.
resource "aws_s3_bucket_versioning" "documents" {
  bucket = aws_s3_bucket.documents.id

  versioning_configuration {
    status = "Enabled"
  }
}

# A document is kept documents_retention_days (then S3 puts a delete marker over it), and a
# version that is no longer current documents_noncurrent_days more. Links are presigned, not
# copies, so there is nothing per link to clean up.
resource "aws_s3_bucket_lifecycle_configuration" "documents" {
  bucket = aws_s3_bucket.documents.id

  rule {
    id     = "documents"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }

    expiration {
      days = var.documents_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = var.documents_noncurrent_days
    }
  }

  # Rules for noncurrent versions need versioning on first.
  depends_on = [aws_s3_bucket_versioning.documents]
}

# Only over TLS; and an object is encrypted with the stack's key or not written. A request that
# names no encryption gets the default above, so the worker need not name it; one that names
# aws:kms must name the key by its ARN; any other kind, or another key, is refused.
data "aws_iam_policy_document" "documents_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.documents.arn,
      "${aws_s3_bucket.documents.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyOtherEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.documents.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEqualsIfExists"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }

  statement {
    sid       = "DenyOtherKeys"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.documents.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    # aws:kms without a key ID would be S3's own key (aws/s3), not the stack's.
    condition {
      test     = "StringEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [aws_kms_key.data.arn]
    }
  }

  # Customer-provided keys (SSE-C) would leave the object unreadable to anyone but the writer.
  statement {
    sid       = "DenyCustomerProvidedKeys"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.documents.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-customer-algorithm"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "documents" {
  bucket = aws_s3_bucket.documents.id
  policy = data.aws_iam_policy_document.documents_bucket.json

  # With block_public_policy on, S3 would refuse a public policy; this one grants nothing.
  depends_on = [aws_s3_bucket_public_access_block.documents]
}
